"""The CLI of the index: build, similar, influence, clusters report (typer CliRunner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from test_index_support import planted_meta, tag_images, write_images
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

from artylyze.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    root = tmp / "images"
    rels = write_images(root, n=24)
    bundle = make_tiny_bundle(tmp / "bundle")
    meta = tag_images(bundle, root, rels, tmp / "meta.parquet",
                      status=["ok"] * 23 + ["error"])
    res = runner.invoke(app, ["index", "build", str(meta), "--out", str(tmp / "idx"),
                              "--bundle", str(bundle), "--gmm-k", "3", "--k", "3", "--pca", "8"])
    assert res.exit_code == 0, res.output
    return {"tmp": tmp, "root": root, "idx": tmp / "idx", "bundle": bundle, "meta": meta,
            "build_output": res.output}


def test_build_prints_the_index_choice_and_themes(built: dict[str, Path]) -> None:
    out = str(built["build_output"])
    assert "23 artworks, 8 dims, Flat (exact inner product, 23 vectors): recall 1.0" in out
    assert "clusters: KMeans k=3, GMM k=3 (diag)" in out
    man = json.loads((built["idx"] / "manifest.json").read_text())
    assert man["source"]["rows_error"] == 1
    assert man["bundle_dir"] == "../bundle"


def test_build_refuses_a_parquet_of_two_models(tmp_path: Path) -> None:
    meta = planted_meta(tmp_path, n_per=2, models=["a@1"] * 3 + ["b@2"] * 3)
    res = runner.invoke(app, ["index", "build", str(meta), "--out", str(tmp_path / "idx")])
    assert res.exit_code == 2
    assert "error:" in res.output and "different models" in res.output


def test_build_takes_a_faiss_factory_string(tmp_path: Path) -> None:
    meta = planted_meta(tmp_path, n_per=40)
    res = runner.invoke(app, ["index", "build", str(meta), "--out", str(tmp_path / "idx"),
                              "--index-type", "HNSW8,Flat", "--gmm-k", "3"])
    assert res.exit_code == 0, res.output
    assert "HNSW8,Flat (efSearch=" in res.output and "recall@10" in res.output


def test_similar_json_for_several_images(built: dict[str, Path]) -> None:
    res = runner.invoke(app, ["similar", "Cubism/artist-1_painting-1-1851.png",
                              "Baroque/artist-3_painting-3-1853.png", "--index", str(built["idx"]),
                              "-k", "4", "--json"])
    assert res.exit_code == 0, res.output
    answers = json.loads(res.stdout)
    assert [a["source"] for a in answers] == ["index", "index"]
    assert [len(a["results"]) for a in answers] == [4, 4]
    assert set(answers[0]["results"][0]) >= {"rank", "score", "path", "title", "artist", "style"}


def test_similar_table_and_html(built: dict[str, Path], tmp_path: Path) -> None:
    query = tmp_path / "query.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("copy", "yes")
    Image.open(built["root"] / "Cubism/artist-1_painting-1-1851.png").save(query, pnginfo=info)
    page = tmp_path / "out" / "similar.html"
    res = runner.invoke(app, ["similar", str(query), "--index", str(built["idx"]), "-k", "3",
                              "--html", str(page)])
    assert res.exit_code == 0, res.output
    assert "Cubism/artist-1_painting-1-1851.png" in res.stdout
    assert page.read_text().count("<img ") == 1 + 3


def test_similar_refuses_another_model(built: dict[str, Path], tmp_path: Path) -> None:
    other = make_tiny_bundle(tmp_path / "other", seed=1)
    query = tmp_path / "q.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(query)
    res = runner.invoke(app, ["similar", str(query), "--index", str(built["idx"]),
                              "--bundle", str(other)])
    assert res.exit_code == 2
    assert "is model 'tiny@" in res.output and "index was built with model" in res.output


def test_similar_on_a_corrupt_index_is_a_clear_error(built: dict[str, Path],
                                                     tmp_path: Path) -> None:
    broken = tmp_path / "idx"
    broken.mkdir()
    for f in built["idx"].iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "clusters.npz").write_bytes(b"not a zip")
    res = runner.invoke(app, ["similar", "Cubism/artist-1_painting-1-1851.png",
                              "--index", str(broken)])
    assert res.exit_code == 2
    assert "clusters.npz: size 9 differs from the manifest's" in res.output


def test_influence_json_and_png(built: dict[str, Path], tmp_path: Path) -> None:
    png = tmp_path / "infl.png"
    res = runner.invoke(app, ["influence", "Cubism/artist-1_painting-1-1851.png", "--index",
                              str(built["idx"]), "--json", "--png", str(png)])
    assert res.exit_code == 0, res.output
    [result] = json.loads(res.stdout)
    assert sum(p["share"] for p in result["posterior"]) == pytest.approx(1.0, abs=1e-5)
    assert Image.open(png).format == "PNG"
    table = runner.invoke(app, ["influence", "Cubism/artist-1_painting-1-1851.png", "--index",
                                str(built["idx"])])
    assert table.exit_code == 0 and "draws on" in table.stdout


def test_influence_takes_several_images_as_similar_does(built: dict[str, Path],
                                                       tmp_path: Path) -> None:
    images = ["Cubism/artist-1_painting-1-1851.png", "Baroque/artist-1_painting-6-1856.png"]
    res = runner.invoke(app, ["influence", *images, "--index", str(built["idx"]), "--json",
                              "--png", str(tmp_path / "infl.png")])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)
    assert [r["query"] for r in results] == images
    assert results[0]["posterior"] != results[1]["posterior"]
    for n in (1, 2):
        assert Image.open(tmp_path / f"infl-{n}.png").format == "PNG"
    assert not (tmp_path / "infl.png").exists()
    similar = json.loads(runner.invoke(app, ["similar", *images, "--index", str(built["idx"]),
                                             "--json"]).stdout)
    assert [r["query"] for r in similar] == images


def test_index_help_names_the_shipped_gallery_rightly() -> None:
    for command in ("similar", "influence"):
        out = runner.invoke(app, [command, "--help"]).stdout
        text = " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())  # rich's boxes wrap lines
        assert "16,922 wikiart11 and styles7 paintings" in text, command
        assert "wikiart11 gallery" not in text


def test_clusters_report(built: dict[str, Path], tmp_path: Path) -> None:
    res = runner.invoke(app, ["clusters", "report", str(built["idx"]), "--out",
                              str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "3 clusters" in res.output and "0 images missing" in res.output
    assert (tmp_path / "rep" / "index.html").is_file()
