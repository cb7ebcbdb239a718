"""evaluate's "what the model looks at" sheets: the right examples are chosen, every task with
labels gets a sheet, and --saliency 0 turns them off."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from tiny_bundle import DEFAULT_TASKS, make_tiny_bundle
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.explain.looks_at import chosen, sheet_classes
from artylyze.train.manifest import build_manifest, write_manifest_parquet


def test_the_most_confident_right_and_wrong_predictions_are_chosen():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.95, 0.05]])
    codes = np.array([0, 0, 1, 1, -1])  # the last one is unlabelled: never a mistake
    assert chosen(codes, probs, 0, 2) == ([0, 1], [2])
    assert chosen(codes, probs, 1, 2) == ([3], [])
    many = np.array([0] * 5 + [1] * 9 + [2] * 2 + [-1] * 4)
    assert sheet_classes(many, 4, limit=2) == [0, 1]
    assert sheet_classes(many, 4) == [0, 1, 2]


def test_evaluate_writes_a_sheet_per_task(wikiart, tmp_path):
    labels = pd.read_csv(wikiart / "labels.csv")
    labels = labels[labels["style"].isin(DEFAULT_TASKS["style"])
                    & labels["genre"].isin(DEFAULT_TASKS["genre"])]
    labels = labels[labels["split"] == "test"].groupby("style").head(6)
    labels[["path", "style", "genre", "split"]].to_csv(tmp_path / "labels.csv", index=False)
    df, _ = build_manifest(wikiart / "images", tmp_path / "labels.csv", min_count=1)
    manifest = write_manifest_parquet(df, tmp_path / "manifest.parquet", wikiart / "images")
    bundle = make_tiny_bundle(tmp_path / "bundle", size=32)
    out = tmp_path / "eval"
    args = ["evaluate", str(bundle), "-m", str(manifest), "--out", str(out), "--saliency", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "what the model looks at" in result.output
    for task in DEFAULT_TASKS:
        sheet = Image.open(out / f"looks_at_{task}.png")
        assert sheet.size[0] > 300 and sheet.size[1] > 200
    again = CliRunner().invoke(app, [*args[:-2], "--out", str(tmp_path / "plain"),
                                     "--saliency", "0"])
    assert again.exit_code == 0, again.output
    assert not list((tmp_path / "plain").glob("looks_at_*.png"))
