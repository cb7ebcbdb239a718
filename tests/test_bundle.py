"""artylyze.model.bundle: loading verifies the bundle, refuses a mismatch, picks providers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import DEFAULT_TASKS, make_tiny_bundle

from artylyze.model import bundle as bundle_mod
from artylyze.model import runtime
from artylyze.model.bundle import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    BundleError,
    Manifest,
    load_bundle,
    load_manifest,
    resolve_providers,
    sha256_file,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny", size=32, dim=16)


@pytest.fixture
def copy(tiny: Path, tmp_path: Path) -> Path:
    """A private copy each test may damage."""
    return Path(shutil.copytree(tiny, tmp_path / "bundle"))


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _edit_manifest(bundle_dir: Path, **changes) -> None:
    path = bundle_dir / MANIFEST_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_loads_and_exposes_the_manifest(tiny: Path) -> None:
    b = load_bundle(tiny)
    m = b.manifest
    assert (m.name, m.backbone, m.input_size, m.resize, m.embedding_dim) == (
        "tiny", "tiny", 32, "stretch", 16)
    assert m.task_names == ("style", "genre")
    assert m.labels("style") == DEFAULT_TASKS["style"]
    assert m.model_sha256 == sha256_file(tiny / MODEL_FILE)
    assert b.model_id.startswith("tiny@") and len(b.model_id) == len("tiny@") + 12
    assert m.format_version == FORMAT_VERSION == 2


def test_unknown_task_names_the_tasks_there_are(tiny: Path) -> None:
    with pytest.raises(BundleError, match=r"no task 'artist'.*'style', 'genre'"):
        load_bundle(tiny).manifest.labels("artist")


def test_run_returns_probabilities_and_unit_embeddings(tiny: Path) -> None:
    b = load_bundle(tiny, threads=1)
    out = b.run(_images(3))
    assert list(out) == ["embedding", "style", "genre"]
    assert out["embedding"].shape == (3, 16) and out["embedding"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, atol=1e-5)
    assert out["style"].shape == (3, 4) and out["genre"].shape == (3, 3)
    np.testing.assert_allclose(out["style"].sum(axis=1), 1.0, atol=1e-5)
    assert b.provider == "CPUExecutionProvider"
    b.close()
    assert b._session is None


@pytest.mark.parametrize("images", [
    np.zeros((2, 32, 32, 3), np.float32),     # not uint8
    np.zeros((32, 32, 3), np.uint8),          # no batch axis
    np.zeros((2, 3, 32, 32), np.uint8),       # NCHW
    np.zeros((2, 64, 64, 3), np.uint8),       # not the bundle's input size
])
def test_run_refuses_what_the_graph_cannot_take(tiny: Path, images: np.ndarray) -> None:
    with pytest.raises(BundleError, match=r"expected uint8 \[N, 32, 32, 3\] images"):
        load_bundle(tiny).run(images)


def test_tampered_model_is_refused(copy: Path) -> None:
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the manifest"):
        load_bundle(copy)
    assert load_bundle(copy, verify=False).manifest.name == "tiny"


def test_truncated_model_is_refused(copy: Path) -> None:
    model = copy / MODEL_FILE
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(BundleError, match="modified or is incomplete"):
        load_bundle(copy)


def test_missing_model_file(copy: Path) -> None:
    (copy / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match="model.onnx is missing"):
        load_bundle(copy)


def test_missing_manifest(copy: Path) -> None:
    (copy / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(copy)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="model bundle directory not found"):
        load_bundle(tmp_path / "nope")


def test_missing_default_bundle_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bundle_mod, "DEFAULT_BUNDLE_DIR", tmp_path / "assets" / "bundle")
    with pytest.raises(BundleError, match="default bundle is not installed"):
        load_bundle()


@pytest.mark.parametrize("version", [3, 0, None, "1"])
def test_wrong_format_version(copy: Path, version) -> None:
    _edit_manifest(copy, format_version=version)
    with pytest.raises(BundleError, match=f"format version {version!r} is not supported"):
        load_bundle(copy)


def test_an_edited_manifest_is_refused(copy: Path) -> None:
    """The model id hashes the whole manifest: one label slipped in front of the style
    labels (every prediction shifts by one under the same id) is caught."""
    data = json.loads((copy / MANIFEST_FILE).read_text())
    data["tasks"][0]["labels"] = ["Abstract_Expressionism", *data["tasks"][0]["labels"][:-1]]
    (copy / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="edited after export"):
        load_bundle(copy)


def test_a_manifest_that_does_not_describe_the_graph_is_refused(copy: Path) -> None:
    """Even with a consistent id (re-hashed by hand), the graph's shapes are checked."""
    data = json.loads((copy / MANIFEST_FILE).read_text())
    data["tasks"][0]["labels"].append("Extra")
    man = bundle_mod.Manifest.from_dict({**data, "format_version": 1})
    bundle_mod.write_manifest(copy, man)
    with pytest.raises(BundleError, match="graph outputs and manifest disagree"):
        _ = load_bundle(copy).session


def test_manifest_that_is_not_json(copy: Path) -> None:
    (copy / MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="not usable JSON"):
        load_bundle(copy)


def test_manifest_that_is_not_an_object(copy: Path) -> None:
    (copy / MANIFEST_FILE).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(BundleError, match="must be a JSON object"):
        load_bundle(copy)


def test_manifest_missing_a_field(copy: Path) -> None:
    data = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    del data["embedding_dim"]
    (copy / MANIFEST_FILE).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match="malformed.*embedding_dim"):
        load_bundle(copy)


def test_unknown_resize_policy(copy: Path) -> None:
    _edit_manifest(copy, input={"size": 32, "resize": "squash"})
    with pytest.raises(BundleError, match="unknown resize policy 'squash'"):
        load_bundle(copy)


def test_manifest_round_trip_keeps_extra_fields(tiny: Path, tmp_path: Path) -> None:
    m = load_manifest(tiny)
    richer = Manifest(**{**m.__dict__, "extra": {"metrics": {"style": {"accuracy": 0.7}},
                                                 "note": "Żółć"}})
    bundle_mod.write_manifest(tmp_path, richer)
    assert load_manifest(tmp_path) == richer
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_FILE]  # no temp file left
    assert "Żółć" in (tmp_path / MANIFEST_FILE).read_text(encoding="utf-8")


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(3 * (1 << 20) + 17)  # spans several chunks
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


# Device resolution -----------------------------------------------------------------------

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(("device", "available", "expected"), [
    ("cpu", WITH_CUDA, CPU_ONLY),
    ("cpu", CPU_ONLY, CPU_ONLY),
    ("auto", CPU_ONLY, CPU_ONLY),
    ("auto", WITH_CUDA, WITH_CUDA),
    ("cuda", WITH_CUDA, WITH_CUDA),
    ("CUDA", WITH_CUDA, WITH_CUDA),
])
def test_resolve_providers(monkeypatch, device, available, expected) -> None:
    monkeypatch.setattr(runtime, "available_providers", lambda: list(available))
    assert resolve_providers(device) == expected


def test_cuda_without_a_cuda_provider_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "available_providers", lambda: list(CPU_ONLY))
    with pytest.raises(BundleError, match=r"no CUDA provider.*artylyze\[gpu\]"):
        resolve_providers("cuda")


def test_unknown_device() -> None:
    with pytest.raises(BundleError, match="unknown device 'tpu'"):
        resolve_providers("tpu")


def test_auto_runs_on_this_machine_and_says_where(tiny: Path) -> None:
    b = load_bundle(tiny, device="auto", threads=1)
    b.run(_images(1))
    assert b.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
