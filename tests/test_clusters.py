"""Clusters: numpy GMM posteriors, npz round trip, KMeans sweep, themes, the HTML report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_index_support import STYLES, planted, planted_meta, tag_images, write_images
from tiny_bundle import make_tiny_bundle

from artylyze.index.build import BuildOptions, build
from artylyze.index.clusters import Gmm, best_k, candidate_ks, fit_gmm, kmeans_sweep
from artylyze.index.errors import IndexStoreError
from artylyze.index.report import clusters_report
from artylyze.index.themes import centroid_affinity, make_themes


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_numpy_posteriors_match_sklearn_and_sum_to_one(covariance: str) -> None:
    from sklearn.mixture import GaussianMixture

    x, _, _ = planted(n_per=40, dim=6, spread=0.3)
    gmm, bics = fit_gmm(x, k=3, covariance_type=covariance)
    assert [b["k"] for b in bics] == [3]
    ref = GaussianMixture(3, covariance_type=covariance, reg_covar=1e-4, random_state=0).fit(x)
    post = gmm.posteriors(x)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(post, ref.predict_proba(x), atol=1e-4)


def test_gmm_round_trips_through_npz_without_pickle(tmp_path: Path) -> None:
    x, _, _ = planted(n_per=20, dim=4, spread=0.3)
    gmm, _ = fit_gmm(x, k=3)
    buf = io.BytesIO()
    np.savez(buf, **gmm.to_arrays())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as data:
        again = Gmm.from_arrays({k: data[k] for k in data.files})
    np.testing.assert_allclose(again.posteriors(x), gmm.posteriors(x), atol=1e-6)
    bad = {**gmm.to_arrays(), "gmm_weights": np.ones(5, np.float32)}
    with pytest.raises(IndexStoreError, match="inconsistent shapes"):
        Gmm.from_arrays(bad)


def test_bic_picks_the_planted_number_of_groups() -> None:
    x, _, _ = planted(n_per=60, dim=4, spread=0.05)
    gmm, bics = fit_gmm(x, ks=[2, 3, 4, 6])
    assert gmm.k == 3
    assert [b["k"] for b in bics] == [2, 3, 4, 6]


def test_kmeans_sweep_scores_every_k_and_prefers_the_planted_one() -> None:
    x, _, _ = planted(n_per=30, dim=8, spread=0.05)
    ks = candidate_ks(len(x), (2, 3, 4, 5, 200))
    assert ks == [2, 3, 4, 5]
    sweep = kmeans_sweep(x, ks)
    assert [set(r) for r in sweep] == [{"k", "inertia", "silhouette", "davies_bouldin"}] * 4
    assert best_k(sweep) == 3


def test_themes_report_the_planted_labels() -> None:
    assign = np.array([0] * 6 + [1] * 4)
    labels = {"style": ["Baroque"] * 5 + [None] + ["Cubism"] * 3 + ["Baroque"],
              "nationality": ["French"] * 6 + ["Dutch"] * 4}
    vectors = np.eye(2, dtype=np.float32)[assign]
    aff = centroid_affinity(vectors, assign, 2)
    themes = make_themes(assign, 2, labels, {"style": "ground truth", "nationality": "predicted"},
                         aff)
    assert themes[0]["labels"]["style"] == {"source": "ground truth", "known": 5, "top": [
        {"label": "Baroque", "share": 1.0, "count": 5}]}
    assert themes[1]["labels"]["style"]["top"][0] == {"label": "Cubism", "share": 0.75,
                                                      "count": 3}
    assert [t["name"] for t in themes] == ["Baroque · French", "Cubism · Dutch"]
    assert themes[0]["closest"] == [{"id": 1, "name": "Cubism · Dutch", "similarity": 0.0}]


def test_build_themes_match_the_planted_parquet(tmp_path: Path) -> None:
    result = build(planted_meta(tmp_path), tmp_path / "idx", BuildOptions(gmm_k=3))
    themes = result.index_dir.themes["themes"]
    tops = sorted((t["labels"]["style"]["top"][0]["label"], t["labels"]["style"]["top"][0]["share"],
                   t["size"]) for t in themes)
    assert tops == [(s, 1.0, 30) for s in STYLES]
    assert sorted(t["name"] for t in themes) == ["Baroque · portrait", "Cubism · landscape",
                                                 "Impressionism · still life"]


def test_report_writes_plots_sheets_and_a_page(tmp_path: Path) -> None:
    root = tmp_path / "images"
    rels = write_images(root, n=24)
    meta = tag_images(make_tiny_bundle(tmp_path / "b"), root, rels, tmp_path / "meta.parquet")
    build(meta, tmp_path / "idx", BuildOptions(gmm_k=3, kmeans_k=3))
    (root / rels[0]).unlink()  # a lost image becomes a grey tile, not a failure
    result = clusters_report(tmp_path / "idx", tmp_path / "report")
    out = tmp_path / "report"
    assert result["clusters"] == 3 and result["missing_images"] == 1
    for name in ("index.html", "elbow.png", "affinity.png"):
        assert (out / name).stat().st_size > 1000
    sheets = sorted((out / "clusters").iterdir())
    assert len(sheets) == result["sheets"]
    assert Image.open(sheets[0]).size == (6 * 128, 2 * 128 + 28)
    page = (out / "index.html").read_text()
    for sheet in sheets:
        assert f'src="clusters/{sheet.name}"' in page
    themes = json.loads((tmp_path / "idx" / "themes.json").read_text())["themes"]
    for theme in themes:
        assert theme["name"] in page
