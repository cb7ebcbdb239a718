"""Tagging N canvases from a local IIIF server against tagging the same files from disk.

One run, same files, same bundle, same process settings; each row is one real run of the
tagging code (incremental state off: a fresh output each time):

* ``disk``: ``tag_collection`` on a folder of the N images;
* ``IIIF, plain files``: a Presentation 3 manifest whose canvases point at the image files on
  a local ``http.server`` (no Image API): the cost of HTTP alone;
* ``IIIF, reference server``: canvases with Image API 3 services on the reference server
  (``iiif_testserver.py``, Flask + Pillow): per canvas an ``info.json`` request, then the
  server decodes, scales and re-encodes the image;
* ``fetch only``: the same requests as the reference-server run, with the same client and
  per-host limit, and no decoding or inference: how fast the server can serve.

Where the time goes: per run the summary's stages (decode wait = fetch + decode not hidden
behind inference; inference; write) and the requests and bytes fetched.

    python benchmarks/iiif_throughput.py --count 200      # images from wikiart11 (224 px)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "benchmarks" / "results" / "iiif_throughput.json"
DATA = ROOT.parent / "shared" / "datasets" / "wikiart11" / "images"


def pick_images(count: int, dest: Path) -> list[Path]:
    files = sorted(DATA.glob("*/*.jpg"))[:count] if DATA.is_dir() else []
    if len(files) < count:  # the examples, repeated, where the data set is not at hand
        examples = sorted((ROOT / "examples").glob("*.jpg"))
        files += [examples[i % len(examples)] for i in range(count - len(files))]
    dest.mkdir(parents=True)
    out = []
    for i, f in enumerate(files):
        target = dest / f"img{i:05d}.jpg"
        target.write_bytes(f.read_bytes())
        out.append(target)
    return out


def summary_row(name: str, s, seconds: float, n: int) -> dict:
    st = s.stages
    return {"run": name, "images": n, "seconds": round(seconds, 2),
            "images_per_s": round(n / seconds, 1), "ok": s.ok_files if hasattr(s, "ok_files")
            else s.tagged, "errors": s.errors,
            "stages_s": {"walk": round(st.walk, 2), "decode_wait": round(st.decode_wait, 2),
                         "inference": round(st.inference, 2), "write": round(st.write, 2),
                         "merge": round(st.merge, 2)},
            "requests": s.requests, "mb_fetched": round(s.bytes_fetched / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--max-per-host", type=int, default=4)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from iiif_support import BUNDLE, Faults, PlainServer, ReferenceServer, manifest_v3

    from artylyze.iiif.fetch import Fetcher, FetchOptions
    from artylyze.model.bundle import load_bundle
    from artylyze.tagging.engine import TagOptions, tag_collection
    from artylyze.tagging.iiif_source import tag_iiif

    tmp = Path(tempfile.mkdtemp(prefix="iiif-bench-"))
    images = pick_images(args.count, tmp / "images")
    plain = PlainServer(tmp / "images", Faults(b"", b""))
    ref = ReferenceServer(tmp / "images", tmp)
    u = plain.url
    plain_doc, ref_doc = tmp / "plain.json", tmp / "ref.json"
    plain_doc.write_text(json.dumps(manifest_v3(f"{u}/plain", "plain", [
        {"id": f"{u}/plain/{p.stem}", "label": p.stem, "width": 224, "height": 224,
         "image": f"{u}/{p.name}"} for p in images])))
    ref_doc.write_text(json.dumps(manifest_v3(f"{u}/ref", "ref", [
        {"id": f"{u}/ref/{p.stem}", "label": p.stem, "width": 224, "height": 224,
         "service": f"{ref.base('3.0')}/{p.stem}"} for p in images])))
    fetch = FetchOptions(max_per_host=args.max_per_host)
    bundle = load_bundle(BUNDLE)
    options = TagOptions()
    rows = []
    try:
        for name, run in (
            ("disk", lambda out: tag_collection(tmp / "images", out, bundle, options)),
            ("IIIF, plain files", lambda out: tag_iiif(str(plain_doc), out, bundle, options,
                                                        fetch)),
            ("IIIF, reference server", lambda out: tag_iiif(str(ref_doc), out, bundle,
                                                             options, fetch)),
        ):
            out = tmp / f"{len(rows)}.parquet"
            t0 = time.perf_counter()
            s = run(out)
            rows.append(summary_row(name, s, time.perf_counter() - t0, len(images)))
            print(json.dumps(rows[-1]), flush=True)
        urls = [f"{ref.base('3.0')}/{p.stem}" for p in images]
        with Fetcher(fetch) as f:
            t0 = time.perf_counter()

            def get(url: str) -> int:
                f.get(f"{url}/info.json")
                return len(f.get(f"{url}/full/max/0/default.jpg").content)

            with ThreadPoolExecutor(2 * args.max_per_host) as pool:
                n_bytes = sum(pool.map(get, urls))
            seconds = time.perf_counter() - t0
        rows.append({"run": "fetch only (reference server)", "images": len(urls),
                     "seconds": round(seconds, 2), "images_per_s": round(len(urls) / seconds, 1),
                     "requests": f.requests, "mb_fetched": round(n_bytes / 1e6, 1)})
        print(json.dumps(rows[-1]), flush=True)
    finally:
        plain.close()
        ref.close()
        bundle.close()
    disk = rows[0]["images_per_s"]
    for r in rows:
        r["ratio_to_disk"] = round(r["images_per_s"] / disk, 2)
    print(f"\n{'run':32s} {'img/s':>7s} {'x disk':>7s}  stages (s)")
    for r in rows:
        st = r.get("stages_s", {})
        print(f"{r['run']:32s} {r['images_per_s']:7.1f} {r['ratio_to_disk']:7.2f}  "
              + ", ".join(f"{k} {v}" for k, v in st.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "cores": __import__(
        "os").cpu_count(), "max_per_host": args.max_per_host, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
