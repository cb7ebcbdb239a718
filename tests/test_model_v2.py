"""Model v2's outputs: dates from the year head, calibrated scores, confident flags, novelty,
and the columns they add to meta.parquet. Synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from artylyze.explain.evaluation import ece, ece_floor
from artylyze.model.bundle import Manifest, Task
from artylyze.model.dating import period_mass, period_of, quantiles
from artylyze.model.predict import predictions
from artylyze.store import make_schema
from artylyze.train.calibrate import (
    confident_threshold,
    fit_calibration,
    fit_interval,
    fit_temperature,
    scale,
)

DECADES = tuple(str(y) for y in range(1800, 1900, 10))


def v2_manifest(calibration: dict | None = None) -> Manifest:
    tasks = (Task("style", ("A", "B", "C")), Task("year", DECADES, "year", 10))
    return Manifest(name="v2", backbone="cnn3", input_size=32, resize="stretch", tasks=tasks,
                    embedding_dim=4, model_sha256="0" * 64,
                    extra={"calibration": calibration} if calibration else {})


def test_quantiles_read_the_bins_as_a_piecewise_linear_cdf() -> None:
    starts = np.array([int(y) for y in DECADES])
    one_bin = np.zeros((1, len(starts)))
    one_bin[0, 5] = 1.0  # all mass in 1850-1859
    np.testing.assert_allclose(quantiles(one_bin, starts, 10, [0.5, 0.1, 0.9]),
                               [[1855.0, 1851.0, 1859.0]])
    two = np.zeros((1, len(starts)))
    two[0, [2, 7]] = 0.5  # half in the 1820s, half in the 1870s
    assert quantiles(two, starts, 10, [0.25])[0, 0] == pytest.approx(1825.0)
    labels, mass = period_mass(two, starts)
    assert labels == ["1800-1849", "1850-1899"]
    np.testing.assert_allclose(mass, [[0.5, 0.5]])
    assert period_of(1887) == "1850-1899" and period_of(float("nan")) is None


def test_predictions_give_a_date_its_period_and_calibrated_extras() -> None:
    centres = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    man = v2_manifest({"confident": {"style": 0.8, "period": 0.6},
                       "year_interval": {"levels": [0.1, 0.9]},
                       "novelty": {"method": "centroid", "centres": centres}})
    year = np.zeros((2, len(DECADES)))
    year[0, 4], year[0, 5] = 0.3, 0.7  # estimate in the 1850s: period 1850-1899
    year[1, 4], year[1, 5] = 0.9, 0.1
    outputs = {"embedding": np.array([[1, 0, 0, 0], [0, 0, 0, 1]], np.float32),
               "style": np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3]], np.float32),
               "year": year.astype(np.float32)}
    first, second = predictions(outputs, man, 2)
    assert first.top["style"][0] == ("A", pytest.approx(0.9))
    assert first.confident == {"style": True, "period": True}
    assert second.confident == {"style": False, "period": True}
    assert 1850 <= first.year.year < 1860 and first.year.low < first.year.year < first.year.high
    assert first.top["period"][0] == ("1850-1899", pytest.approx(0.7))
    assert second.top["period"][0] == ("1800-1849", pytest.approx(0.9))
    assert first.novelty == pytest.approx(0.0, abs=1e-6)  # on a class centre
    assert second.novelty == pytest.approx(1.0, abs=1e-6)  # orthogonal to every centre


def test_period_is_the_most_probable_period_and_period_top_is_ranked() -> None:
    """Mass 0.45 / 0.30 / 0.25 over three periods puts the median year in 1850-1899, yet
    1800-1849 is the most probable: ``period`` is that one, first in ``period_top``."""
    decades = tuple(str(y) for y in range(1800, 1950, 10))
    man = Manifest(name="p", backbone="cnn3", input_size=32, resize="stretch",
                   tasks=(Task("year", decades, "year", 10),), embedding_dim=4,
                   model_sha256="0" * 64, extra={"calibration": {"confident": {"period": 0.4}}})
    year = np.zeros((1, len(decades)), np.float32)
    year[0, :5], year[0, 5:10], year[0, 10:] = 0.09, 0.06, 0.05
    (p,) = predictions({"embedding": np.zeros((1, 4), np.float32), "year": year}, man, 3)
    assert period_of(p.year.year) == "1850-1899", "the case needs the median in the next period"
    assert [label for label, _ in p.top["period"]] == ["1800-1849", "1850-1899", "1900-1949"]
    scores = [score for _, score in p.top["period"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(0.45)
    assert p.confident["period"] is True


def test_v2_rows_have_date_novelty_and_confident_columns() -> None:
    man = v2_manifest({"confident": {"style": 0.5, "period": 0.5},
                       "novelty": {"method": "centroid", "centres": [[1, 0, 0, 0]]}})
    names = make_schema(man).names
    for col in ("style", "style_score", "style_top", "style_confident", "period",
                "period_top", "period_confident", "year", "year_low", "year_high", "novelty"):
        assert col in names
    assert "year_top" not in names and "year_score" not in names
    assert "novelty" not in make_schema(v2_manifest()).names  # no calibration, no novelty


def test_temperature_undoes_overconfidence() -> None:
    """Labels drawn from softmax(z), the model reports softmax(2z): the fit must find T~2."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (20_000, 5))
    truth = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    codes = np.array([rng.choice(5, p=p) for p in truth])
    reported = np.exp(2 * z) / np.exp(2 * z).sum(1, keepdims=True)
    t = fit_temperature(reported, codes)
    assert t == pytest.approx(2.0, rel=0.05)
    before = ece(reported.max(1), reported.argmax(1) == codes)
    fixed = scale(reported, t)
    after = ece(fixed.max(1), fixed.argmax(1) == codes)
    assert before > 0.1 and after < 0.02


def test_confident_threshold_reaches_the_precision_asked() -> None:
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 5000)
    correct = rng.uniform(0, 1, 5000) < scores  # calibrated: P(right) = score
    t = confident_threshold(scores, correct, precision=0.9)
    assert correct[scores >= t].mean() >= 0.9
    assert 0.7 < t < 0.9  # and not needlessly strict
    assert confident_threshold(scores, np.zeros(5000, bool)) > 1.0  # never right: never sure


def test_year_interval_is_fitted_to_cover_eighty_percent() -> None:
    rng = np.random.default_rng(2)
    starts = np.array([int(y) for y in DECADES])
    true = rng.uniform(1800, 1900, 3000)
    centre = true + rng.normal(0, 12, 3000)  # the model's belief is off by ~12 years
    probs = np.exp(-0.5 * ((starts[None] + 5 - centre[:, None]) / 6.0) ** 2)  # too narrow
    probs /= probs.sum(1, keepdims=True)
    fitted = fit_interval(probs, DECADES, 10, true)
    assert fitted["val_coverage"] == pytest.approx(0.8, abs=0.02)
    lo, hi = fitted["levels"]
    assert lo < 0.1 and hi == pytest.approx(1 - lo)  # the narrow belief had to be widened


def test_fit_calibration_covers_every_head() -> None:
    rng = np.random.default_rng(3)
    n = 600
    style_codes = rng.integers(0, 3, n)
    style = np.full((n, 3), 0.1)
    style[np.arange(n), style_codes] = 0.8
    years = rng.uniform(1800, 1899, n)
    year_codes = ((years // 10) * 10 - 1800).astype(int) // 10
    year = np.full((n, len(DECADES)), 0.02)
    year[np.arange(n), year_codes] = 0.82
    emb = np.eye(4, dtype=np.float32)[style_codes]
    tasks = [{"name": "style", "labels": ["A", "B", "C"]},
             {"name": "year", "labels": list(DECADES), "kind": "year", "step": 10}]
    cal = fit_calibration({"style": style, "year": year, "embedding": emb},
                          {"style": style_codes, "year": year_codes}, tasks, years)
    assert set(cal["temperature"]) == {"style", "year"}
    assert set(cal["confident"]) == {"style", "period"}
    assert cal["temperature"]["style"] < 1.0  # always right at 0.8: it was underconfident
    assert len(cal["novelty"]["centres"]) == 3
    np.testing.assert_allclose(cal["novelty"]["centres"], np.eye(4)[:3], atol=1e-6)


@pytest.mark.slow
def test_a_year_head_and_calibration_travel_from_checkpoint_to_rows(wikiart, tmp_path) -> None:
    """Export bakes the temperatures into the graph and copies the calibration; tagging then
    writes dates, periods, confident flags and novelty."""
    import json

    import pyarrow.parquet as pq
    import torch
    from typer.testing import CliRunner

    from artylyze.cli.main import app
    from artylyze.export import export_bundle
    from artylyze.model.bundle import load_bundle
    from artylyze.train.calibrate import CALIBRATION_FILE
    from artylyze.train.checkpoint import save_checkpoint
    from artylyze.train.models import build_model

    torch.manual_seed(0)
    tasks = {"style": ["A", "B", "C"], "year": list(DECADES)}
    model = build_model("cnn3", {k: len(v) for k, v in tasks.items()}, embedding_dim=8,
                        pretrained=False)
    config = {"backbone": "cnn3", "embedding_dim": 8, "input_size": 48, "resize": "stretch",
              "name": "v2-test", "data": {"dataset": "wikiart11"},
              "tasks": [{"name": "style", "labels": tasks["style"]},
                        {"name": "year", "labels": tasks["year"], "kind": "year", "step": 10}]}
    ckpt = save_checkpoint(tmp_path / "ckpt", model.eval(), config)
    calibration = {"temperature": {"style": 3.0, "year": 0.5},
                   "confident": {"style": 0.34, "period": 0.5},
                   "year_interval": {"levels": [0.05, 0.95]},
                   "novelty": {"method": "centroid", "centres": np.eye(3, 8).tolist()}}
    (ckpt / CALIBRATION_FILE).write_text(json.dumps(calibration))
    export_bundle(ckpt, tmp_path / "bundle", data=wikiart, check_count=4, threads=1)
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.manifest.year_task.step == 10
    assert bundle.manifest.calibration["temperature"] == calibration["temperature"]
    images = np.stack([np.full((48, 48, 3), v, np.uint8) for v in (10, 120, 250)])
    graph = bundle.run(images)
    with torch.no_grad():
        raw = model(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    want = torch.softmax(raw["style"] / 3.0, dim=1).numpy()  # T=3: flatter than the logits
    np.testing.assert_allclose(graph["style"], want, atol=1e-5)  # float reorder in the graph

    collection = tmp_path / "collection"
    collection.mkdir()
    for f in sorted((wikiart / "images" / "Baroque").glob("*.jpg"))[:3]:
        (collection / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "meta.parquet"
    res = CliRunner().invoke(app, ["tag", str(collection), "--out", str(out), "--model",
                                   str(tmp_path / "bundle"), "--quiet"])
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 3
    for row in rows:
        assert row["year_low"] <= row["year"] <= row["year_high"]
        assert row["period"] == period_of(row["year"])
        assert isinstance(row["style_confident"], bool) and 0.0 <= row["novelty"] <= 2.0


def test_class_biases_undo_a_shifted_prior() -> None:
    """Class-balanced training tells every class is equally common; when class 0 is really
    four times as common, the fitted biases move mass back to it and accuracy rises."""
    from artylyze.train.calibrate import fit_scaling

    rng = np.random.default_rng(4)
    prior = np.array([0.8, 0.1, 0.1])
    codes = rng.choice(3, 20_000, p=prior)
    z = rng.normal(0, 1.0, (20_000, 3))
    z[np.arange(20_000), codes] += 1.0
    balanced = np.exp(z) / np.exp(z).sum(1, keepdims=True)  # likelihoods, flat prior
    t, bias = fit_scaling(balanced, codes)
    fixed = scale(balanced, t, bias)
    assert bias[0] > bias[1] and bias[0] > bias[2]
    assert (fixed.argmax(1) == codes).mean() > (balanced.argmax(1) == codes).mean() + 0.05
    assert ece(fixed.max(1), fixed.argmax(1) == codes) < 0.02


def test_ece_floor_is_what_sampling_alone_costs() -> None:
    """A calibrated model's ECE on n works is not 0 but about the floor, which shrinks like
    1/sqrt(n); a model 20 points overconfident sits far above it."""
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.3, 1.0, 300)
    floor = ece_floor(scores)
    assert 0.02 < floor < 0.1
    assert ece_floor(np.tile(scores, 25)) < floor / 3
    calibrated = [ece(scores, rng.random(len(scores)) < scores) for _ in range(50)]
    assert abs(np.mean(calibrated) - floor) < 0.01
    overconfident = ece(scores, rng.random(len(scores)) < scores - 0.2)
    assert overconfident > 2 * floor
