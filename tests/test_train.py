"""Training: every backbone learns on real images, masks skip unknown labels, checkpoints
round-trip exactly, imbalance weights follow the balanced formula, the manifest keeps rows."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from artylyze.imaging import load_image
from artylyze.train import data
from artylyze.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from artylyze.train.config import TrainConfig
from artylyze.train.ema import WeightAverage
from artylyze.train.loop import Trainer, train
from artylyze.train.manifest import (
    LabelledSource,
    build_manifest,
    period_of,
    write_manifest_parquet,
)
from artylyze.train.models import BACKBONES, build_model
from artylyze.train.objective import masked_loss
from artylyze.train.registry import RegistryError


@pytest.fixture(scope="module")
def batch(wikiart):
    """8 real paintings of two styles at 64 px, with style codes."""
    import csv

    with open(wikiart / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = [r for r in rows if r["style"] == "Baroque"][:4] + \
             [r for r in rows if r["style"] == "Pop_Art"][:4]
    images = np.stack([load_image(wikiart / "images" / r["path"], 64).pixels for r in picked])
    return data.to_tensor(images), torch.tensor([0] * 4 + [1] * 4)


@pytest.mark.parametrize("name", BACKBONES.list())
def test_each_backbone_loss_falls(name, batch):
    torch.manual_seed(0)
    x, y = batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision nets warn that they start from random init
        model = build_model(name, {"style": 2}, embedding_dim=16, pretrained=name ==
                            "efficientnet_lite0")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss = masked_loss(model(x), {"style": y}, {"style": None}, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, losses


def test_masked_task_is_ignored():
    out = {"embedding": torch.zeros(3, 2), "style": torch.tensor([[5.0, 0.0]] * 3),
           "genre": torch.tensor([[0.0, 9.0]] * 3)}
    only_style = masked_loss(out, {"style": torch.tensor([0, 0, 0]),
                                   "genre": torch.tensor([-1, -1, -1])}, {"style": None,
                                                                         "genre": None}, 0.0)
    expected = torch.nn.functional.cross_entropy(out["style"], torch.tensor([0, 0, 0]))
    assert torch.isclose(only_style, expected)
    # a wrong genre label on one known row adds exactly that row's loss
    mixed = masked_loss(out, {"style": torch.tensor([0, 0, 0]),
                              "genre": torch.tensor([-1, 0, -1])}, {"style": None,
                                                                   "genre": None}, 0.0)
    genre_row = torch.nn.functional.cross_entropy(out["genre"][:1], torch.tensor([0]))
    assert torch.isclose(mixed, expected + genre_row)


def test_checkpoint_round_trips_exactly(tmp_path):
    torch.manual_seed(1)
    model = build_model("cnn3", {"style": 3, "genre": 2}, embedding_dim=8, pretrained=False)
    config = {"backbone": "cnn3", "embedding_dim": 8, "input_size": 64, "resize": "stretch",
              "tasks": [{"name": "style", "labels": ["a", "b", "c"]},
                        {"name": "genre", "labels": ["x", "y"]}]}
    save_checkpoint(tmp_path / "ck", model, config)
    loaded, cfg = load_checkpoint(tmp_path / "ck")
    assert cfg == config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k
    x = torch.rand(2, 3, 64, 64) * 255
    model.eval()
    assert torch.equal(model(x)["style"], loaded(x)["style"])
    assert not any(p.suffix == ".pt" for p in (tmp_path / "ck").iterdir())


def test_balanced_class_weights():
    codes = np.array([0, 0, 0, 1, -1, 2, 2, 2, 2, 2, 2, 2])  # counts 3, 1, 7; one unknown
    w = data.class_weights(codes, 4)
    n, c = 11, 3
    np.testing.assert_allclose(w, [n / (c * 3), n / (c * 1), n / (c * 7), 0.0], rtol=1e-6)
    # weighted class counts are equal: each class contributes the same total weight
    totals = [w[k] * (codes == k).sum() for k in range(3)]
    np.testing.assert_allclose(totals, totals[0], rtol=1e-6)


def test_undersample_equalises_classes():
    codes = np.array([0] * 10 + [1] * 3 + [-1] * 2)
    picked = data.undersample(codes, np.random.default_rng(0))
    assert np.bincount(codes[picked]).tolist() == [3, 3]


def test_unknown_backbone_names_the_choices():
    with pytest.raises(RegistryError, match="unknown backbone 'resnet9'.*cnn3"):
        BACKBONES.create("resnet9")


def test_manifest_keeps_rows_and_derives_period(wikiart):
    df, report = build_manifest(wikiart / "images", wikiart / "labels.csv", min_count=30)
    assert len(df) == 9922 and report.missing_images == 0
    assert df["style"].notna().all()
    assert df["genre"].isna().sum() == 2697  # unknown genres stay null, rows stay
    assert len(report.classes["artist"]) == 82  # artists with >= 30 images
    assert period_of(1887) == "1850-1899" and period_of(float("nan")) is None
    dated = df["year"].notna()
    assert df["period"].notna().sum() == dated.sum() - 15  # from recorded years only, and
    kept = df["period"].notna()  # 1550-1599 (15 works) is rarer than min_count
    assert (df.loc[kept, "period"] == df.loc[kept, "year"].map(period_of)).all()
    assert (df.loc[dated & ~kept, "year"] < 1600).all()


def test_manifest_joins_sources_and_keeps_their_splits(wikiart, tmp_path):
    import pandas as pd

    other = tmp_path / "other"
    (other / "images" / "Realism").mkdir(parents=True)
    first = sorted((wikiart / "images" / "Baroque").glob("*.jpg"))[:3]
    for i, f in enumerate(first):
        (other / "images" / "Realism" / f"r{i}.jpg").write_bytes(f.read_bytes())
    pd.DataFrame({"path": [f"Realism/r{i}.jpg" for i in range(3)], "style": "Realism",
                  "split": ["train", "val", "test"], "source": ["a", "b", "b"]}).to_csv(
        other / "labels.csv", index=False)
    sources = [LabelledSource.find(wikiart), LabelledSource.find(other)]
    df, report = build_manifest(sources, min_count=1)
    assert len(df) == 9922 + 3 and report.missing_images == 0
    mine = df[df["dataset"] == "other"]
    assert mine["split"].tolist() == ["train", "val", "test"]
    assert mine["source"].tolist() == ["a", "b", "b"]
    assert mine["genre"].isna().all() and mine["year"].isna().all()
    assert set(df.loc[df["dataset"] == "wikiart11", "source"]) == {"wikiart11"}
    for path in df["path"].sample(20, random_state=0).tolist() + mine["path"].tolist():
        assert (report.root / path).is_file()


def test_weight_average_follows_the_online_weights():
    torch.manual_seed(0)
    model = build_model("cnn3", {"style": 3}, embedding_dim=4, pretrained=False)
    avg = WeightAverage(model, decay=0.9)
    before = {k: v.clone() for k, v in avg.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    avg.update(model)  # first update: decay ramps to min(0.9, 2/11)
    d = 2 / 11
    for name, value in avg.model.state_dict().items():
        online = model.state_dict()[name]
        if value.is_floating_point():
            torch.testing.assert_close(value, d * before[name] + (1 - d) * online)
        else:
            assert torch.equal(value, online)
    assert not any(p.requires_grad for p in avg.model.parameters())


def test_finetune_saves_averaged_weights_and_resumes(wikiart, tmp_path):
    """One epoch, then a second run continues from last/ (online weights + optimizer)."""
    import pandas as pd

    labels = pd.read_csv(wikiart / "labels.csv")
    labels = labels.groupby("split").head(12)  # 12 paintings per split
    labels.to_csv(tmp_path / "labels.csv", index=False)
    df, _ = build_manifest(wikiart / "images", tmp_path / "labels.csv", min_count=1)
    manifest = write_manifest_parquet(df, tmp_path / "manifest.parquet", wikiart / "images")
    cfg = TrainConfig(manifest=str(manifest), out=str(tmp_path / "run"), backbone="cnn3",
                      epochs=1, batch_size=8, input_size=64, train_size=56,
                      pretrained=False, bf16=False, ema_decay=0.9)
    train(cfg, log=lambda s: None)
    last = tmp_path / "run" / "last"
    averaged = load_file(str(last / "model.safetensors"))
    online = load_file(str(last / "online.safetensors"))
    assert any(not torch.equal(averaged[k], online[k]) for k in averaged)
    logs: list[str] = []
    train(replace(cfg, epochs=2), log=logs.append)
    assert any("resumed from" in s and "after epoch 1" in s for s in logs)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]

    # --init: a frozen re-fit starts from the fine-tuned weights
    best = tmp_path / "run" / "best"
    refit = Trainer(replace(cfg, out=str(tmp_path / "refit"), mode="frozen", init=str(best)),
                    log=lambda s: None)
    for name, value in load_file(str(best / "model.safetensors")).items():
        assert torch.equal(refit.model.state_dict()[name], value), name
    with pytest.raises(CheckpointError, match="task labels differ"):
        Trainer(replace(cfg, out=str(tmp_path / "other"), tasks=["style"], init=str(best)),
                log=lambda s: None)


def _small_manifest(wikiart, tmp_path, per_split: int = 12):
    import pandas as pd

    labels = pd.read_csv(wikiart / "labels.csv").groupby("split").head(per_split)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    df, _ = build_manifest(wikiart / "images", tmp_path / "labels.csv", min_count=1)
    return write_manifest_parquet(df, tmp_path / "manifest.parquet", wikiart / "images")


def test_frozen_runs_the_same_loop_resumes_and_keys_features_by_start(wikiart, tmp_path):
    """Frozen mode writes last/ and resumes from it like fine-tuning; its feature cache is
    keyed by the starting weights' content, so --init another checkpoint into the same run
    directory computes new features; a run directory of another run is refused."""
    manifest = _small_manifest(wikiart, tmp_path)
    base = TrainConfig(manifest=str(manifest), out=str(tmp_path / "a"), backbone="cnn3",
                       epochs=1, batch_size=8, input_size=64, train_size=56,
                       pretrained=False, bf16=False, ema_decay=0.0)
    first = train(base, log=lambda s: None)
    torch.manual_seed(1)
    second = train(replace(base, out=str(tmp_path / "b"), seed=1), log=lambda s: None)

    frozen = replace(base, out=str(tmp_path / "refit"), mode="frozen", init=str(first))
    train(frozen, log=lambda s: None)
    logs: list[str] = []
    train(replace(frozen, epochs=2), log=logs.append)
    assert any("resumed from" in s and "after epoch 1" in s for s in logs)
    history = json.loads((tmp_path / "refit" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    caches = sorted(p.name for p in (tmp_path / "refit").glob("features-*.npy"))
    assert len(caches) == 2  # train and val, computed once for the two runs

    with pytest.raises(CheckpointError, match="from another run"):
        train(replace(frozen, epochs=3, init=str(second)), log=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "refit").glob("features-*.npy")) == caches
    # another start's features, in the same directory, are computed under another key
    Trainer(replace(frozen, out=str(tmp_path / "refit2"), init=str(second)), log=lambda s: None)
    theirs = {p.name for p in (tmp_path / "refit2").glob("features-*.npy")}
    assert len(theirs) == 2 and theirs.isdisjoint(caches)


def test_frozen_stops_early_without_improvement(wikiart, tmp_path):
    """``patience`` applies to frozen runs too (it used to be ignored there)."""
    manifest = _small_manifest(wikiart, tmp_path)
    cfg = TrainConfig(manifest=str(manifest), out=str(tmp_path / "f"), backbone="cnn3",
                      mode="frozen", epochs=30, batch_size=8, input_size=64, lr=0.0,
                      pretrained=False, bf16=False, patience=2)
    train(cfg, log=lambda s: None)  # lr 0: nothing improves after the first epoch
    history = json.loads((tmp_path / "f" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_texture_backbone_extends_lite0_features_and_loads_its_weights():
    """The texture backbone is Lite0 plus statistics: same parameter names (so a Lite0
    backbone, e.g. one recovered from a bundle, loads by name), and its first 1280 features
    are Lite0's pooled features."""
    torch.manual_seed(0)
    lite = build_model("efficientnet_lite0", {"style": 2}, pretrained=False).eval()
    texture = build_model("efficientnet_lite0_texture", {"style": 2}, pretrained=False).eval()
    assert set(texture.backbone.state_dict()) == set(lite.backbone.state_dict())
    texture.backbone.load_state_dict(lite.backbone.state_dict())
    x = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        pooled = lite.backbone(lite.normalize(x))
        features = texture.backbone(texture.normalize(x))
    assert features.shape == (2, 1280 + 2 * (80 + 112 + 192 + 320))
    # the same convolutions and pooling in the same order; a tolerance in case a kernel
    # reorders the mean's sum
    torch.testing.assert_close(features[:, :1280], pooled, atol=1e-6, rtol=1e-6)
    assert (features[:, 1280:] != 0).any()
