"""Influences that mean what they say: the mixture's membership temperature is fitted, stored
in clusters.npz (no pickle), applied by every posterior, and an index without one still
loads; small collections get more than two components."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from test_index_support import GENRES, STYLES, planted, write_meta

from artylyze.index.build import BuildOptions, build
from artylyze.index.clusters import Gmm, cluster_dims
from artylyze.index.errors import IndexStoreError
from artylyze.index.membership import (
    agreement,
    calibration_error,
    fit_temperature,
    softmax_t,
    top_agrees,
)
from artylyze.index.store import DEFAULT_GALLERY_DIR, load_index_dir


def planted_overconfident(n: int = 4000, k: int = 6, sharpen: float = 5.0, seed: int = 0):
    """Log-joints whose softmax at T = ``sharpen`` is calibrated: the top cluster agrees with
    probability equal to its membership there."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, k))
    true = softmax_t(z)
    top = true.argmax(1)
    right = rng.uniform(size=n) < true.max(1)
    dominant = [f"s{j}" for j in range(k)]
    labels = np.array([f"s{t}" if r else "other" for t, r in zip(top, right, strict=True)],
                      object)
    return z * sharpen, agreement(dominant, labels)


def test_the_temperature_undoes_overconfident_memberships():
    lj, agree = planted_overconfident()
    right = top_agrees(lj, agree)
    before = calibration_error(softmax_t(lj).max(1), right)
    t = fit_temperature(lj, agree)
    assert t == pytest.approx(5.0, rel=0.15)
    after = calibration_error(softmax_t(lj, t).max(1), right)
    assert before > 0.2 and after < 0.03
    assert (softmax_t(lj, t).argmax(1) == lj.argmax(1)).all(), "rankings never change"


def test_no_information_leaves_the_memberships_as_they_are():
    lj, agree = planted_overconfident(n=50)
    assert fit_temperature(lj, np.ones_like(agree)) == 1.0
    assert fit_temperature(lj[:0], agree[:0]) == 1.0


def gmm(temperature: float = 1.0) -> Gmm:
    rng = np.random.default_rng(1)
    means = rng.normal(size=(3, 4)).astype(np.float32)
    prec = np.full((3, 4), 2.0, np.float32)
    return Gmm(np.full(3, 1 / 3, np.float32), means, 1 / prec ** 2, prec, "diag", temperature)


def test_the_temperature_is_stored_without_pickle_and_old_arrays_still_load():
    warm = gmm(4.0)
    buf = io.BytesIO()
    np.savez(buf, **warm.to_arrays())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as data:
        again = Gmm.from_arrays(dict(data))
    assert again.temperature == pytest.approx(4.0)
    old = {k: v for k, v in warm.to_arrays().items() if k != "gmm_temperature"}
    assert Gmm.from_arrays(old).temperature == 1.0
    x = np.random.default_rng(2).normal(size=(20, 4)).astype(np.float32)
    sharp, soft = gmm().posteriors(x), again.posteriors(x)
    assert (sharp.argmax(1) == soft.argmax(1)).all() and soft.max(1).mean() < sharp.max(1).mean()
    np.testing.assert_allclose(soft, softmax_t(gmm().log_joint(x), 4.0), rtol=1e-6)
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(IndexStoreError, match="temperature"):
            Gmm.from_arrays({**old, "gmm_temperature": np.array(bad)})


def test_a_small_collection_clusters_in_fewer_dims():
    assert cluster_dims(300, 32) == 7 and cluster_dims(100, 32) == 4
    assert cluster_dims(16922, 32) == 32 and cluster_dims(3, 32) == 2


def test_index_build_stores_a_fitted_temperature(tmp_path):
    x, styles, genres = planted(n_per=20)
    rng = np.random.default_rng(4)
    noisy = [STYLES[rng.integers(3)] if rng.uniform() < 0.3 else s for s in styles]
    meta = write_meta(tmp_path / "meta.parquet", [f"w{i}.jpg" for i in range(60)], x,
                      {"style": noisy, "genre": genres}, {"style": STYLES, "genre": GENRES},
                      "synthetic@000000000000", tmp_path)
    result = build(meta, tmp_path / "ix", BuildOptions(kmeans_k=3, gmm_k=3))
    index = load_index_dir(tmp_path / "ix")
    gmm = index.clusters.gmm
    assert gmm.temperature != 1.0
    assert result.themes["gmm"]["temperature"] == pytest.approx(gmm.temperature, abs=1e-4)
    assert result.themes["gmm"]["temperature_rows"] == 60


def test_the_shipped_gallery_gives_calibrated_memberships():
    index = load_index_dir(DEFAULT_GALLERY_DIR)
    gmm = index.clusters.gmm
    assert gmm.temperature > 1.0
    assert index.manifest.clusters["temperature"] == pytest.approx(gmm.temperature, abs=1e-4)
    split = np.array(index.rows.column("split").to_pylist(), object)
    styles = np.array([s or "" for s in index.rows.column("true_style").to_pylist()], object)
    test = np.flatnonzero((split == "test") & (styles != ""))
    coords = index.clusters.coords[test].astype(np.float32)
    post = gmm.posteriors(coords)
    dominant = [t["labels"]["style"]["top"][0]["label"] for t in index.themes["themes"]]
    right = agreement(dominant, styles[test])[np.arange(len(test)), post.argmax(1)]
    assert np.median(post.max(1)) < 0.9
    assert calibration_error(post.max(1), right) <= 0.05
    untempered = replace(gmm, temperature=1.0).posteriors(coords)
    assert calibration_error(untempered.max(1), right) > 0.2  # what it was
