"""``artylyze teach``: columns and types, refusals, kept tasks reaching later ``tag`` runs,
learning from corrections, and the review queue's order.

Real files tagged with the tiny ONNX bundle (tests/tiny_bundle.py); the learning tests use
synthetic embeddings whose classes are known.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

from artylyze.cli.main import app
from artylyze.store import TOP_TYPE
from artylyze.teach.columns import read_file
from artylyze.teach.fit import MIN_PER_CLASS, fit_task
from artylyze.teach.model import TaughtTask, TeachError
from artylyze.teach.queue import review_order
from artylyze.teach.run import kept_dir, teach

runner = CliRunner()
FAMILIES = {"warm": (200, 40, 30), "cool": (30, 60, 210), "pale": (225, 225, 215)}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), size=16)


def family_picture(family: str, seed: int) -> Image.Image:
    """A family's flat colour with one pixel nudged: distinct files whose embeddings stay
    close (the tiny model's features are quadrant means, which one pixel barely moves)."""
    rng = np.random.default_rng(seed)
    pixels = np.tile(np.array(FAMILIES[family], np.uint8), (16, 16, 1))
    y, x, c = rng.integers(0, 16), rng.integers(0, 16), rng.integers(0, 3)
    pixels[y, x, c] = pixels[y, x, c] + rng.integers(1, 9) if pixels[y, x, c] < 128 else \
        pixels[y, x, c] - rng.integers(1, 9)
    return Image.fromarray(pixels, "RGB")


def collection(root: Path, per_family: int, start: int = 0) -> dict[str, str]:
    """Images of every family; returns path (relative) -> family."""
    out = {}
    for family in FAMILIES:
        for i in range(start, start + per_family):
            rel = f"{family}_{i:03d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            family_picture(family, hash((family, i)) % 2**32).save(root / rel)
            out[rel] = family
    return out


def tag(root: Path, out: Path | str, bundle: Path) -> None:
    r = runner.invoke(app, ["tag", str(root), "--out", str(out), "--model", str(bundle), "-q"])
    assert r.exit_code == 0, r.output


def write_labels(path: Path, labels: dict[str, str], key: str = "path") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([key, "label"])
        w.writerows(labels.items())
    return path


@pytest.fixture(scope="module")
def tagged_once(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path
                ) -> tuple[Path, Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("tagged")
    root = base / "works"
    truth = collection(root, 12)
    out = base / "meta.parquet"
    tag(root, out, bundle_dir)
    return root, out, truth


@pytest.fixture()
def tagged(tagged_once, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A fresh copy of the tagged collection and its output for each test."""
    root, out, truth = tagged_once
    shutil.copytree(root, tmp_path / "works")
    shutil.copy(out, tmp_path / "meta.parquet")
    return tmp_path / "works", tmp_path / "meta.parquet", truth


def first_per_family(truth: dict[str, str], n: int) -> dict[str, str]:
    """The first ``n`` works of each family: the ones a person labelled."""
    return {p: f for family in FAMILIES
            for p, f in [kv for kv in truth.items() if kv[1] == family][:n]}


def teach_by_cli(out: Path, labels: dict[str, str], tmp_path: Path) -> None:
    """`artylyze teach OUT --task object_type --labels CSV` on ``labels``; must succeed."""
    csv_file = write_labels(tmp_path / "labels.csv", labels)
    r = runner.invoke(app, ["teach", str(out), "--task", "object_type", "--labels",
                            str(csv_file), "-q"])
    assert r.exit_code == 0, r.output


def test_teach_writes_four_columns_with_builtin_types(tagged, tmp_path: Path) -> None:
    root, out, truth = tagged
    teach_by_cli(out, first_per_family(truth, 6), tmp_path)
    table = pq.read_table(out)
    schema = table.schema
    assert schema.field("object_type").type == pa.string()
    assert schema.field("object_type_score").type == pa.float32()
    assert schema.field("object_type_top").type == TOP_TYPE
    assert schema.field("object_type_confident").type == pa.bool_()
    assert schema.field("style_top").type == schema.field("object_type_top").type
    rows = table.to_pylist()
    assert all(r["object_type"] in FAMILIES for r in rows)
    assert all(0.0 < r["object_type_score"] <= 1.0 for r in rows)
    for r in rows:  # the top list is sorted and starts with the label and its score
        top = r["object_type_top"]
        assert top[0]["label"] == r["object_type"]
        assert top[0]["score"] == pytest.approx(r["object_type_score"])
        assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    right = np.mean([r["object_type"] == truth[r["path"]] for r in rows])
    assert right >= 0.9  # the families are far apart in the tiny model's embeddings
    assert b"artylyze.bundle" in schema.metadata and b"artylyze.taught" in schema.metadata
    # every other column is kept as it was
    assert {"style", "genre", "embedding", "sha256"} <= set(schema.names)


def test_too_few_labels_refused_with_how_many_more(tagged, tmp_path: Path) -> None:
    root, out, truth = tagged
    few = first_per_family(truth, 6)
    pale = [p for p, f in few.items() if f == "pale"]
    for p in pale[2:]:
        del few[p]  # two pale labels left
    labels = write_labels(tmp_path / "labels.csv", few)
    before = out.read_bytes()
    r = runner.invoke(app, ["teach", str(out), "--task", "object_type", "--labels", str(labels)])
    assert r.exit_code == 2
    assert f"'pale' has 2, {MIN_PER_CLASS - 2} more" in r.output
    assert out.read_bytes() == before  # nothing written
    assert not kept_dir(out).exists()


def test_labels_by_sha256_and_unknown_csv(tagged, tmp_path: Path) -> None:
    root, out, truth = tagged
    shas = dict(zip(*pq.read_table(out, columns=["path", "sha256"]).to_pydict().values(),
                    strict=True))
    by_sha = {shas[p]: f for p, f in first_per_family(truth, 5).items()}
    report = teach(out, "object_type", write_labels(tmp_path / "s.csv", by_sha, "sha256"), None)
    assert report.labelled == 15
    stored_root = pq.read_schema(out).metadata[b"artylyze.root"].decode()  # where it was tagged
    absolute = {f"{stored_root}/{p}": f for p, f in first_per_family(truth, 6).items()}
    assert teach(out, "object_type", write_labels(tmp_path / "a.csv", absolute), None
                 ).labelled == 18
    with pytest.raises(TeachError, match="none of its 2 labels"):
        teach(out, "object_type", write_labels(tmp_path / "x.csv", {"a.png": "x", "b": "y"}),
              None)


def test_kept_task_applies_to_new_works_in_a_later_tag(tagged, tmp_path: Path,
                                                      bundle_dir: Path) -> None:
    root, out, truth = tagged
    teach(out, "object_type", write_labels(tmp_path / "l.csv", first_per_family(truth, 6)), None)
    kept = sorted(p.name for p in kept_dir(out).iterdir())
    assert kept == ["object_type.json", "object_type.npz"]
    new = collection(root, 3, start=100)
    tag(root, out, bundle_dir)
    table = pq.read_table(out)
    rows = {r["path"]: r for r in table.to_pylist()}
    assert set(new) <= set(rows)
    task = TaughtTask.load(kept_dir(out) / "object_type.json")
    x = read_file(out).x
    expect = np.array(task.classes)[task.proba(x).argmax(1)]
    assert list(table.column("object_type").to_pylist()) == list(expect)
    assert all(rows[p]["object_type"] == f for p, f in new.items())
    assert table.schema.field("object_type_top").type == TOP_TYPE


def test_kept_files_hold_no_pickle(tagged, tmp_path: Path) -> None:
    root, out, truth = tagged
    teach(out, "object_type", write_labels(tmp_path / "l.csv", first_per_family(truth, 6)), None)
    npz = kept_dir(out) / "object_type.npz"
    with np.load(npz, allow_pickle=False) as z:  # raises on any object (pickled) array
        assert all(z[k].dtype != object for k in z.files)
    assert b"pickle" not in (kept_dir(out) / "object_type.json").read_bytes()


def test_builtin_task_learns_from_corrections(tagged, tmp_path: Path) -> None:
    """Relabel the tiny bundle's style by colour family: teach --task style moves every
    work, reviewed or not, towards what people said, and keeps the bundle's classes."""
    root, out, truth = tagged
    say = {"warm": "Baroque", "cool": "Cubism", "pale": "Impressionism"}
    labels = {p: say[f] for p, f in first_per_family(truth, 5).items()}
    teach(out, "style", write_labels(tmp_path / "l.csv", labels), None)
    task = TaughtTask.load(kept_dir(out) / "style.json")
    assert task.classes[:4] == ["Baroque", "Cubism", "Impressionism", "Pop_Art"]
    rows = pq.read_table(out, columns=["path", "style"]).to_pylist()
    unreviewed = [r for r in rows if r["path"] not in labels]
    right = np.mean([r["style"] == say[truth[r["path"]]] for r in unreviewed])
    assert right >= 0.8


def test_fit_chooses_and_calibrates_on_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32))
    y = np.repeat(np.arange(4), 20)
    x = centres[y] + rng.normal(scale=0.8, size=(80, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    task = fit_task("t", x, [f"c{i}" for i in y], "m")
    assert task.report["cv_accuracy"] >= 0.9
    assert {c["kind"] for c in task.report["candidates"]} == {"linear", "knn", "centroid"}
    test_y = np.repeat(np.arange(4), 50)
    test_x = centres[test_y] + rng.normal(scale=0.8, size=(200, 32))
    test_x /= np.linalg.norm(test_x, axis=1, keepdims=True)
    p = task.proba(test_x)
    assert (p.argmax(1) == test_y).mean() >= 0.9
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)


def test_review_order_least_confident_and_disagreeing_first() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[5] = x[0]  # work 5 looks exactly like reviewed work 0
    x[6] = x[1]  # work 6 looks exactly like reviewed work 1
    scores = np.array([0.9, 0.9, 0.2, 0.95, 0.6, 0.6, 0.6, 0.99])
    predicted = ["a", "a", "a", "a", "a", "b", "a", "a"]
    reviewed = np.zeros(8, bool)
    reviewed[[0, 1]] = True
    human = ["a", "a", None, None, None, None, None, None]
    order = review_order(scores, x, reviewed, human, predicted, k=1)
    assert sorted(order) == [2, 3, 4, 5, 6, 7]
    assert order[0] == 5  # same look as a reviewed "a", but the model says "b"
    assert order[1] == 2  # the least confident
    assert order[-1] == 7  # the most confident, agreeing
    per_reviewed = review_order(scores, x, np.array([0, 1]), ["a", "a"], predicted, k=1)
    assert list(per_reviewed) == list(order)
    with pytest.raises(ValueError, match="one per work"):
        review_order(scores, x, reviewed, ["a"], predicted)


def test_review_order_spreads_near_copies() -> None:
    x = np.tile(np.eye(4)[0], (4, 1))
    x = np.vstack([x, np.eye(4)[1]])
    scores = np.array([0.1, 0.1, 0.1, 0.1, 0.3])
    order = review_order(scores, x, np.zeros(5, bool), [None] * 5, ["a"] * 5)
    assert list(order[:2]) == [0, 4]  # one of the copies, then the other picture


def test_labels_come_from_the_review_store_beside_the_output(tagged, tmp_path: Path) -> None:
    """People's answers in the review store teach, matched by sha256 even after a move;
    a rejection (no label) and other tasks are not taken; --review names another store."""
    from artylyze.review.store import ReviewStore, review_path

    root, out, truth = tagged
    shas = dict(zip(*pq.read_table(out, columns=["path", "sha256"]).to_pydict().values(),
                    strict=True))
    picked = first_per_family(truth, 5)
    with ReviewStore.open(review_path(out)) as store:
        for p, f in picked.items():
            store.add(sha256=shas[p], path="moved/" + p, task="object_type", action="set",
                      reviewer="ann", label=f)
            store.add(sha256=shas[p], path=p, task="school", action="set", reviewer="ann",
                      label="x")
        other = next(p for p in truth if p not in picked)
        store.add(sha256=shas[other], path=other, task="object_type", action="reject",
                  reviewer="bob")
    report = teach(out, "object_type", None, None)
    assert report.labelled == 15
    with pytest.raises(TeachError, match="no such review store"):
        teach(out, "object_type", None, tmp_path / "missing.sqlite")


def test_part_folder_output(tagged, tmp_path: Path, bundle_dir: Path) -> None:
    """``tag --out DIR/``: the task is kept beside the folder (which tag replaces whole),
    and reaches the works a later run adds."""
    root, _, truth = tagged
    out = tmp_path / "meta"
    tag(root, f"{out}/", bundle_dir)
    teach(out, "object_type", write_labels(tmp_path / "l.csv", first_per_family(truth, 5)), None)
    assert kept_dir(out) == tmp_path / "meta.taught" and kept_dir(out).is_dir()
    new = collection(root, 2, start=200)
    tag(root, f"{out}/", bundle_dir)
    assert out.is_dir()
    rows = {r["path"]: r["object_type"] for f in sorted(out.glob("*.parquet"))
            for r in pq.read_table(f, columns=["path", "object_type"]).to_pylist()}
    assert all(rows[p] == f for p, f in new.items())
    assert None not in rows.values()


def test_review_order_without_embeddings_or_scores() -> None:
    """What the review page passes for an index without embeddings or a task the model
    lacks: the least confident first, unscored works last; predictions of None never count
    as disagreeing."""
    scores = np.array([0.7, np.nan, 0.2, 0.9, np.nan])
    order = review_order(scores, None, np.array([False, False, False, False, True]),
                         [None] * 5, ["a", None, "b", "a", None])
    assert list(order) == [2, 0, 3, 1]
    x = np.eye(5)
    x[3] = x[4]  # work 3 looks like the reviewed work 4, whose label is "z"
    order = review_order(np.full(5, np.nan), x, np.array([0, 0, 0, 0, 1], bool),
                         [None, None, None, None, "z"], [None] * 5)
    assert order[-1] == 3  # all unscored: the work most like one already reviewed comes last


def test_a_taught_task_reaches_the_outputs(tagged, tmp_path: Path) -> None:
    """Readers of meta.parquet (CSV, JSON lines, XMP) list a taught task like a built-in one."""
    from artylyze.metadata.metafile import open_meta

    root, out, truth = tagged
    teach_by_cli(out, first_per_family(truth, 6), tmp_path)
    assert "object_type" in open_meta(out).tasks
    jsonl = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["write", str(out), "--jsonl", str(jsonl), "--xmp",
                            "--sidecar-dir", str(tmp_path / "xmp")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert all(row["object_type"] in FAMILIES for row in rows)
    packets = [p.read_text() for p in (tmp_path / "xmp").rglob("*.xmp")]
    assert packets and all("object_type" in p.lower() or "ObjectType" in p for p in packets)
