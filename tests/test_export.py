"""artylyze.export: a small real checkpoint becomes a bundle that keeps the bundle contract.

The model is the cnn3 baseline at 64 px with tiny heads, so every export takes seconds.
Images are real wikiart11 paintings (decoded by artylyze.imaging, as tagging does).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from artylyze.export import ExportError, export_bundle
from artylyze.export import parity as parity_mod
from artylyze.export.quantize import check_accuracy_bar, float_stem, float_tail
from artylyze.export.samples import load_pixels, read_samples
from artylyze.model.bundle import MODEL_FILE, BundleError, load_bundle, sha256_file
from artylyze.train.checkpoint import save_checkpoint
from artylyze.train.models import build_model

SIZE = 64
STYLES = ["Abstract_Expressionism", "Baroque", "Cubism", "Fauvism", "Impressionism",
          "Minimalism", "Naive_Art_Primitivism", "Pointillism", "Pop_Art", "Rococo", "Ukiyo_e"]
GENRES = ["landscape", "portrait", "still_life"]
PERIODS = ["before 1800", "1800-1900", "after 1900"]  # not a labels.csv column: agreement only


def make_checkpoint(out: Path, seed: int = 0, **config_changes) -> Path:
    """A cnn3 checkpoint whose heads give confident, image-dependent predictions."""
    torch.manual_seed(seed)
    tasks = {"style": STYLES, "genre": GENRES, "period": PERIODS}
    model = build_model("cnn3", {k: len(v) for k, v in tasks.items()}, embedding_dim=16,
                        pretrained=False)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.mul_(20.0)  # spread the softmax so top-1 is never a near tie
    config = {"backbone": "cnn3", "embedding_dim": 16, "input_size": SIZE, "resize": "stretch",
              "tasks": [{"name": k, "labels": v} for k, v in tasks.items()],
              "name": "test-cnn3", "data": {"dataset": "wikiart11", "train_images": 10},
              "metrics": {"style": {"accuracy": 0.5}}, **config_changes}
    return save_checkpoint(out, model.eval(), config)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "cnn3")


@pytest.fixture(scope="module")
def exported(ckpt: Path, wikiart: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "fp32"
    manifest = export_bundle(ckpt, out, data=wikiart, check_count=6, threads=1)
    return out, manifest


@pytest.fixture(scope="module")
def int8(ckpt: Path, wikiart: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "int8"
    manifest = export_bundle(ckpt, out, quantize="int8", data=wikiart, check_count=4,
                             calibration_count=8, eval_count=24, max_style_drop=100.0,
                             threads=1)
    return out, manifest


@pytest.fixture(scope="module")
def pixels(wikiart: Path) -> np.ndarray:
    samples = read_samples(wikiart / "labels.csv", split="val", count=5, seed=3)
    return load_pixels(samples, SIZE, "stretch")


# fp32 export -------------------------------------------------------------------------------

def test_manifest_describes_the_checkpoint(exported) -> None:
    out, m = exported
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    assert (m.name, m.backbone, m.input_size, m.resize, m.embedding_dim) == (
        "test-cnn3", "cnn3", SIZE, "stretch", 16)
    assert m.task_names == ("style", "genre", "period")
    assert m.labels("style") == tuple(STYLES) and m.labels("period") == tuple(PERIODS)
    assert m.model_sha256 == sha256_file(out / MODEL_FILE)
    assert m.extra["training"] == {"dataset": "wikiart11", "train_images": 10}
    assert m.extra["metrics"] == {"style": {"accuracy": 0.5}}
    assert m.extra["quantization"] == {"dtype": "float32"}
    assert m.extra["opset"] == 18
    assert datetime.fromisoformat(m.extra["created"]).tzinfo is not None
    assert json.loads((out / "manifest.json").read_text())["model_id"] == m.model_id


def test_parity_passes_and_is_recorded(exported) -> None:
    _, m = exported
    p = m.extra["parity"]
    assert p["passed"] is True and p["images"] == 6 and p["atol"] == 1e-4
    assert set(p["tasks"]) == {"style", "genre", "period"}
    assert p["max_abs_diff"] < 1e-4 and p["embedding_max_abs_diff"] < 1e-4
    assert all(t["top1_agreement"] == 1.0 and t["ties"] == 0 for t in p["tasks"].values())
    assert p["source"].endswith("wikiart11/labels.csv")


def test_graph_honours_the_contract(exported) -> None:
    out, _ = exported
    model = onnx.load(str(out / MODEL_FILE))
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims == ["batch", SIZE, SIZE, 3]
    assert [o.name for o in model.graph.output] == ["embedding", "style", "genre", "period"]


def test_dynamic_batch_probabilities_and_unit_embeddings(exported, pixels) -> None:
    out, _ = exported
    b = load_bundle(out, threads=1)
    one, five = b.run(pixels[:1]), b.run(pixels)
    assert five["embedding"].shape == (5, 16) and one["embedding"].shape == (1, 16)
    assert five["style"].shape == (5, 11) and five["period"].shape == (5, 3)
    np.testing.assert_allclose(np.linalg.norm(five["embedding"], axis=1), 1.0, atol=1e-5)
    for task in ("style", "genre", "period"):
        np.testing.assert_allclose(five[task].sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(one[task][0], five[task][0], atol=1e-5)
        assert (five[task] >= 0).all()
    assert len({int(i) for i in five["style"].argmax(1)}) > 1  # predictions depend on the image


def test_bundle_matches_the_torch_model(exported, ckpt, pixels) -> None:
    from artylyze.export.graph import BundleGraph, torch_outputs
    from artylyze.train.checkpoint import load_checkpoint

    out, m = exported
    model, _ = load_checkpoint(ckpt)
    reference = torch_outputs(BundleGraph(model, m.task_names), pixels)
    got = load_bundle(out, threads=1).run(pixels)
    for name, ref in reference.items():
        np.testing.assert_allclose(got[name], ref, atol=1e-5)


def test_tampered_export_is_refused(exported, tmp_path: Path) -> None:
    out, _ = exported
    copy = Path(shutil.copytree(out, tmp_path / "b"))
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[-10] ^= 0x01
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the manifest"):
        load_bundle(copy)


def test_bundle_runs_with_onnxruntime_alone(exported) -> None:
    """The inference path (load, verify, run) never imports torch or the training code."""
    out, _ = exported
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from artylyze.model.bundle import load_bundle
        b = load_bundle({str(out)!r}, threads=1)
        r = b.run(np.zeros((2, {SIZE}, {SIZE}, 3), np.uint8))
        assert r["style"].shape == (2, 11), r["style"].shape
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "onnx")
                       or m.startswith("artylyze.train"))
        print("loaded:", heavy)
        assert not heavy
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"


def test_parity_failure_raises_and_keeps_the_old_bundle(ckpt, wikiart, exported, tmp_path,
                                                        monkeypatch) -> None:
    import artylyze.export.runtime as runtime

    out = Path(shutil.copytree(exported[0], tmp_path / "bundle"))
    before = sha256_file(out / MODEL_FILE)
    real_run = runtime.run

    def perturbed(session, pixels, names):
        result = real_run(session, pixels, names)
        result["genre"] = result["genre"] + 1e-3
        return result

    monkeypatch.setattr(runtime, "run", perturbed)
    with pytest.raises(ExportError, match=r"fp32 export does not match the torch model on 3"):
        export_bundle(ckpt, out, data=wikiart, check_count=3, threads=1)
    assert sha256_file(out / MODEL_FILE) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging left behind


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(ckpt, tmp_path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ExportError, match="not a model bundle"):
        export_bundle(ckpt, tmp_path / "photos")
    assert (tmp_path / "photos" / "a.jpg").read_bytes() == b"x"


def test_a_bundle_left_aside_by_a_crashed_export_is_put_back(tmp_path) -> None:
    from artylyze.atomic import aside_name

    out = tmp_path / "bundle"
    aside = aside_name(out)
    aside.mkdir()
    (aside / "manifest.json").write_text("{}")
    with pytest.raises(Exception):  # noqa: B017 - any failure after the recovery will do
        export_bundle(tmp_path / "no-such-checkpoint", out)
    assert (out / "manifest.json").read_text() == "{}"
    assert not aside.exists()


def test_importing_export_needs_no_torch() -> None:
    script = ("import sys, artylyze.export, artylyze.cli.export; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_opset_defaults_agree() -> None:
    """The CLI's side is checked in test_options (the CLI declares options.Export)."""
    from artylyze.export import graph, onnx_export
    from artylyze.options import Export

    assert graph.DEFAULT_OPSET == onnx_export.DEFAULT_OPSET == Export.opset.default
    assert Export.check_count.default == onnx_export.CHECK_COUNT
    assert Export.calibration_count.default == onnx_export.CALIBRATION_COUNT
    assert Export.max_style_drop.default == onnx_export.MAX_STYLE_DROP


def test_unknown_quantization_and_low_opset(ckpt, tmp_path) -> None:
    with pytest.raises(ExportError, match="unknown quantization 'int4'"):
        export_bundle(ckpt, tmp_path / "b", quantize="int4")
    with pytest.raises(ExportError, match="opset 17 is not supported"):
        export_bundle(ckpt, tmp_path / "b", opset=17, check_images=_some_images(tmp_path))
    assert not (tmp_path / "b").exists()


def test_bad_image_sources_fail_before_exporting(ckpt, wikiart, tmp_path, monkeypatch) -> None:
    import artylyze.export.graph as graph

    def never(*args, **kwargs):
        raise AssertionError("exported although a source is bad")

    monkeypatch.setattr(graph, "export_onnx", never)
    with pytest.raises(ExportError, match="missing.csv: no such folder or CSV"):
        export_bundle(ckpt, tmp_path / "b", quantize="int8", data=wikiart,
                      eval_labels=tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images found"):
        export_bundle(ckpt, tmp_path / "b", check_images=tmp_path / "empty")
    assert not (tmp_path / "b").exists()


def _some_images(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (80, 50), (40 * i, 90, 200)).save(folder / f"{i}.png")
    return folder


# int8 ----------------------------------------------------------------------------------------

def test_int8_records_method_accuracy_and_speed(int8) -> None:
    _, m = int8
    q = m.extra["quantization"]
    assert (q["dtype"], q["method"], q["format"]) == ("int8", "static", "QDQ")
    assert q["calibration_images"] == 8
    assert q["evaluation"]["images"] == 24
    acc = q["accuracy"]
    assert set(acc) == {"style", "genre", "period"}
    assert acc["style"]["labelled"] == 24  # every wikiart11 image has a style
    assert 0 < acc["genre"]["labelled"] <= 24
    for row in (acc["style"], acc["genre"]):
        assert row["change_points"] == pytest.approx(
            100 * (row["int8_accuracy"] - row["fp32_accuracy"]), abs=1e-3)
    assert "fp32_accuracy" not in acc["period"] and 0 <= acc["period"]["agreement"] <= 1
    speed = q["speed"]
    assert speed["batch"] == 4 and speed["threads"] == 1
    assert speed["fp32_ms_per_image"] > 0 and speed["int8_ms_per_image"] > 0
    # the manifest rounds the speedup to 2 decimals, which at a speedup under 0.5 is more
    # than 1%: compare at that rounding, not at a relative tolerance
    assert speed["speedup"] == pytest.approx(
        speed["fp32_ms_per_image"] / speed["int8_ms_per_image"], abs=0.005 + 1e-9, rel=0.01)
    assert m.extra["parity"]["passed"] is True  # the fp32 graph was checked first


def test_int8_bundle_keeps_the_output_contract(int8, pixels) -> None:
    out, m = int8
    model = onnx.load(str(out / MODEL_FILE))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    res = load_bundle(out, threads=1).run(pixels)
    np.testing.assert_allclose(np.linalg.norm(res["embedding"], axis=1), 1.0, atol=1e-5)
    for task in m.task_names:
        np.testing.assert_allclose(res[task].sum(axis=1), 1.0, atol=1e-5)


def test_int8_keeps_stem_and_outputs_float(exported) -> None:
    model = onnx.load(str(exported[0] / MODEL_FILE))
    ops = {n.name: n.op_type for n in model.graph.node}
    stem = [ops[n] for n in float_stem(model)]
    assert stem[0] == "Conv" and "Cast" in stem and "Transpose" in stem
    assert sorted(ops[n] for n in float_tail(model)).count("Softmax") == 3


def test_int8_that_costs_too_much_style_accuracy_is_refused(ckpt, wikiart, tmp_path) -> None:
    refused = r"int8 refused: style accuracy .* a drop of -?[\d.]+ points \(allowed: -100\)"
    with pytest.raises(ExportError, match=refused):
        export_bundle(ckpt, tmp_path / "b", quantize="int8", data=wikiart, check_count=2,
                      calibration_count=4, eval_count=8, max_style_drop=-100.0, threads=1)
    assert list(tmp_path.iterdir()) == []


def test_accuracy_bar_needs_labelled_style() -> None:
    with pytest.raises(ExportError, match="no labelled 'style' images"):
        check_accuracy_bar({"genre": {"labelled": 10, "change_points": 0.0}})
    with pytest.raises(ExportError, match="no labelled 'style' images"):
        check_accuracy_bar({"style": {"labelled": 0, "agreement": 1.0}})
    check_accuracy_bar({"style": {"labelled": 10, "change_points": -1.5}})  # exactly the bar


def write_training_manifest(path: Path, wikiart: Path, per_split: int = 10) -> Path:
    """A small manifest.parquet as ``artylyze dataset build`` writes it (image root in the
    metadata, ``period`` derived from the year)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for split in ("train", "val", "test"):
        for s in read_samples(wikiart / "labels.csv", split=split, count=per_split, seed=1):
            year = int(s.labels["year"][:4]) if s.labels.get("year", "")[:4].isdigit() else None
            period = None if year is None else PERIODS[(year >= 1800) + (year >= 1900)]
            rows.append({"path": s.path.relative_to(wikiart / "images").as_posix(),
                         "split": split, "style": s.labels["style"],
                         "genre": s.labels.get("genre"), "period": period, "year": year})
    table = pa.Table.from_pylist(rows).replace_schema_metadata(
        {b"artylyze.images": str(wikiart / "images").encode()})
    pq.write_table(table, path)
    return path


def test_training_manifest_is_the_default_source(wikiart: Path, tmp_path: Path) -> None:
    manifest = write_training_manifest(tmp_path / "manifest.parquet", wikiart)
    ckpt = make_checkpoint(tmp_path / "ckpt", data={"manifest": str(manifest)})
    m = export_bundle(ckpt, tmp_path / "b", quantize="int8", check_count=3,
                      calibration_count=4, max_style_drop=100.0, threads=1)
    assert m.extra["parity"]["source"].endswith("manifest.parquet")
    q = m.extra["quantization"]
    assert q["evaluation"]["images"] == 10  # the manifest's whole test split
    assert q["calibration_images"] == 4
    assert q["accuracy"]["style"]["labelled"] == 10
    assert q["accuracy"]["period"]["labelled"] > 0  # period labels come from the manifest
    assert "fp32_accuracy" in q["accuracy"]["period"]


def test_missing_training_manifest_falls_back_to_wikiart(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", data={"manifest": str(tmp_path / "gone.parquet")})
    m = export_bundle(ckpt, tmp_path / "b", check_count=2, threads=1)
    assert m.extra["parity"]["source"] == "datasets/wikiart11/labels.csv"


# parity.compare ----------------------------------------------------------------------------

def _outputs(style: list[list[float]]) -> dict[str, np.ndarray]:
    emb = np.eye(len(style), 4, dtype=np.float32)
    return {"embedding": emb, "style": np.asarray(style, np.float32)}


def test_compare_counts_near_ties_but_fails_real_disagreements() -> None:
    ref = _outputs([[0.50002, 0.49998], [0.9, 0.1]])
    tie = parity_mod.compare(ref, _outputs([[0.49998, 0.50002], [0.9, 0.1]]), ["style"])
    assert tie.tasks["style"].top1_agreement == 0.5 and tie.tasks["style"].ties == 1
    assert tie.passed
    flip = parity_mod.compare(ref, _outputs([[0.50002, 0.49998], [0.1, 0.9]]), ["style"])
    assert not flip.passed and flip.tasks["style"].ties == 0
    with pytest.raises(ExportError, match=r"top-1 agreement 50\.0%"):
        parity_mod.require(flip)


def test_compare_fails_on_nan() -> None:
    ref = _outputs([[0.6, 0.4]])
    bad = _outputs([[np.nan, 0.4]])
    assert not parity_mod.compare(ref, bad, ["style"]).passed


# samples -----------------------------------------------------------------------------------

def test_read_samples_from_csv_split_and_folder(wikiart: Path, tmp_path: Path) -> None:
    test = read_samples(wikiart / "labels.csv", split="test", count=10, seed=0)
    assert len(test) == 10 and all(s.path.is_file() for s in test)
    assert all(s.labels["style"] in STYLES for s in test)
    assert test == read_samples(wikiart / "labels.csv", split="test", count=10, seed=0)
    assert len({s.labels["style"] for s in test}) > 1  # a spread, not the first rows
    folder = _some_images(tmp_path)
    (folder / "notes.txt").write_text("not an image")
    assert [s.path.name for s in read_samples(folder)] == ["0.png", "1.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images found"):
        read_samples(tmp_path / "empty")
    with pytest.raises(ExportError, match="no such folder or CSV"):
        read_samples(tmp_path / "missing")


# CLI -----------------------------------------------------------------------------------------

def test_cli_exports_and_prints_parity(ckpt, wikiart, tmp_path) -> None:
    from artylyze.cli.main import app

    out = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(out), "--data",
                                      str(wikiart), "--check-count", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (test-cnn3@" in result.output
    assert "parity vs torch on 3 images: passed" in result.output
    assert "export: parity check against torch: 3/3" in result.output  # plain progress lines
    assert load_bundle(out).manifest.extra["parity"]["images"] == 3


def test_cli_turns_export_errors_into_exit_2(ckpt, tmp_path) -> None:
    from artylyze.cli.main import app

    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "b"),
                                      "--quantize", "int4"])
    assert result.exit_code == 2
    assert "error: unknown quantization 'int4'" in result.output
