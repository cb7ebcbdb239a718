"""A head that reads the backbone features (the ``domain`` head, one hidden layer) instead of
the embedding: it learns on standardized features and takes raw ones, and it survives the
checkpoint, the ONNX export and the recovery from the graph like the linear heads do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from artylyze.export import export_bundle
from artylyze.model.bundle import load_bundle
from artylyze.train.checkpoint import load_checkpoint, save_checkpoint
from artylyze.train.dontknow import fit_feature_head
from artylyze.train.feature_cache import augmented_views
from artylyze.train.from_bundle import graph_weights
from artylyze.train.models import build_model, head_layout


def test_the_head_learns_on_standardized_features_and_reads_raw_ones() -> None:
    """Two classes told apart by a feature 1,000x smaller and offset from the others:
    without standardization folded in right, the raw-feature accuracy collapses."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = rng.normal(size=(600, 20)) * 1000.0 + 5000.0
    x[:, 7] = 0.001 * (y * 2.0 - 1.0 + rng.normal(scale=0.3, size=600)) + 3.0
    head = fit_feature_head(x.astype(np.float32), y, classes=2, hidden=8, steps=200)
    with torch.no_grad():
        pred = head(torch.from_numpy(x.astype(np.float32))).argmax(1).numpy()
    assert (pred == y).mean() > 0.95


def test_layout_splits_linear_and_feature_heads() -> None:
    tasks = [{"name": "style", "labels": ["a", "b"]},
             {"name": "domain", "labels": ["artwork", "photograph", "blank"], "hidden": 16}]
    assert head_layout(tasks) == ({"style": 2}, {"domain": (3, 16)})


def test_a_feature_head_survives_checkpoint_export_and_recovery(wikiart: Path,
                                                               tmp_path: Path) -> None:
    torch.manual_seed(0)
    tasks = [{"name": "style", "labels": ["a", "b", "c"]},
             {"name": "domain", "labels": ["artwork", "photograph"], "hidden": 8}]
    linear, deep = head_layout(tasks)
    model = build_model("cnn3", linear, embedding_dim=8, pretrained=False,
                        feature_heads=deep).eval()
    config = {"backbone": "cnn3", "embedding_dim": 8, "input_size": 64, "resize": "stretch",
              "tasks": tasks, "name": "feature-head"}
    ckpt = save_checkpoint(tmp_path / "ck", model, config)
    loaded, _ = load_checkpoint(ckpt)
    x = torch.rand(3, 3, 64, 64) * 255
    with torch.no_grad():
        want = model(x)["domain"]
        assert torch.equal(loaded(x)["domain"], want)

    bundle = tmp_path / "bundle"
    export_bundle(ckpt, bundle, data=wikiart, check_count=3, threads=1)
    manifest = load_bundle(bundle).manifest
    assert next(t for t in manifest.tasks if t.name == "domain").hidden == 8
    # what recover() copies back (the shipped bundle's full recovery: test_from_bundle)
    weights = graph_weights(bundle)
    for name, param in model.feature_heads.named_parameters():
        np.testing.assert_array_equal(weights[f"feature_heads.{name}"], param.detach().numpy())


def test_augmented_views_are_varied_and_repeatable(wikiart: Path) -> None:
    """A resumed cache run must make the same views: they are seeded by the image's row."""
    path = sorted((wikiart / "images").rglob("*.jpg"))[0]
    views = augmented_views(path, 3, row=5)
    assert [v.shape for v in views] == [(224, 224, 3)] * 3
    assert all(v.dtype == np.uint8 for v in views)
    assert not np.array_equal(views[0], views[1])
    again = augmented_views(path, 3, row=5)
    assert all(np.array_equal(a, b) for a, b in zip(views, again, strict=True))
    assert not np.array_equal(augmented_views(path, 1, row=6)[0], views[0])
