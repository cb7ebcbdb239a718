"""Backbone features of whole data sets, cached once per split in resumable chunks.

Heads on a frozen backbone (the default model's recipe) only need each image's pooled
backbone features, so new heads (``domain``, the artist head with "another artist") are
fitted from this cache in seconds instead of re-running the network. Features come from the
backbone exported to ONNX (onnxruntime is ~25% faster than torch on these CPUs); each chunk
of ``CHUNK`` images is written atomically, so a stopped run resumes where it stopped.
``--augment N`` caches N random views of each image instead (crops, mirrors, JPEG
re-encoding): 526 notart training images are few for what a photograph can look like.

    python -m artylyze.train.feature_cache runs/feat --weights runs/v1-backbone.safetensors \\
        wikiart11:test notart:test runs/synthetic:train ...
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from artylyze.atomic import atomic_write

CHUNK = 128
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
BACKBONE = "efficientnet_lite0_texture"
ONNX_FILE = "backbone.onnx"
AUGMENT_SEED = 2026


def dataset_dir(name: str) -> Path:
    """``wikiart11`` -> ../shared/datasets/wikiart11; a path stays a path."""
    p = Path(name)
    return p if p.is_dir() else SHARED / name


def split_paths(folder: Path, split: str) -> list[str]:
    df = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    return df.loc[df["split"] == split, "path"].tolist()


def export_backbone(weights: str, out: Path) -> Path:
    """The backbone alone as ONNX: uint8 NHWC images -> pooled (texture) features."""
    import torch

    from artylyze.train.models import build_model

    model = build_model(BACKBONE, {"x": 2}, 256, True, weights).eval()

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.backbone(self.model.normalize(x.permute(0, 3, 1, 2).float()))

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(Features().eval(), (torch.zeros(2, 224, 224, 3, dtype=torch.uint8),),
                      str(out), input_names=["image"], output_names=["features"],
                      dynamic_axes={"image": {0: "n"}, "features": {0: "n"}},
                      opset_version=18, dynamo=False)
    return out


def extract(cache: Path, spec: str, session, copies: int = 0, log=print) -> None:
    """Fill ``cache/<name>-<split>-NNN.npy`` for ``spec`` = ``dataset:split`` (with
    ``copies``, ``<name>-<split>-augN-NNN.npy``: ``copies`` views per image, in row order)."""
    from artylyze.imaging import load_image

    name, split = spec.rsplit(":", 1)
    folder = dataset_dir(name)
    paths = split_paths(folder, split)
    for c in range(0, len(paths), CHUNK):
        f = cache / f"{stem(name, split, copies)}-{c // CHUNK:03d}.npy"
        if f.is_file():
            continue
        t0 = time.time()
        if copies:
            imgs = np.stack([v for i, p in enumerate(paths[c:c + CHUNK], start=c)
                             for v in augmented_views(folder / "images" / p, copies, i)])
        else:
            imgs = np.stack([load_image(folder / "images" / p, 224, "stretch").pixels
                             for p in paths[c:c + CHUNK]])
        feats = np.concatenate([session.run(None, {"image": imgs[i:i + 32]})[0]
                                for i in range(0, len(imgs), 32)]).astype(np.float32)
        atomic_write(f, lambda file, a=feats: np.save(file, a))
        log(f"{spec} {min(c + CHUNK, len(paths))}/{len(paths)} ({time.time() - t0:.1f}s)")


def stem(name: str, split: str, copies: int = 0) -> str:
    return f"{Path(name).name}-{split}" + (f"-aug{copies}" if copies else "")


def augmented_views(path: Path, copies: int, row: int) -> list[np.ndarray]:
    """``copies`` random views of one image at the network's input: a crop of 35-100% of
    its area (aspect 3:4 to 4:3), mirrored half the time, re-saved as JPEG at quality 60-95.
    Seeded by the image's row, so a resumed run makes the same views."""
    import io

    from PIL import Image

    from artylyze.imaging import load_image

    rng = np.random.default_rng([AUGMENT_SEED, row])
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        views = []
        for _ in range(copies):
            area = rng.uniform(0.35, 1.0) * w * h
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw = max(1, min(w, round((area * aspect) ** 0.5)))
            ch = max(1, min(h, round((area / aspect) ** 0.5)))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            view = im.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            buf = io.BytesIO()
            view.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
            views.append(load_image(buf.getvalue(), 224, "stretch").pixels)
    return views


def load(cache: Path, name: str, split: str, copies: int = 0) -> np.ndarray:
    """The cached features of one split, rows in ``labels.csv`` order (with ``copies``, each
    row's views one after another)."""
    n = len(split_paths(dataset_dir(name), split))
    parts = [np.load(cache / f"{stem(name, split, copies)}-{c // CHUNK:03d}.npy")
             for c in range(0, n, CHUNK)]
    out = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    if len(out) != n * max(copies, 1):
        raise ValueError(f"{name}:{split}: {len(out)} cached rows for {n} images"
                         + (f" x {copies} views" if copies else ""))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import onnxruntime as ort

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cache", type=Path)
    p.add_argument("specs", nargs="+", help="dataset:split (a shared data set or a folder)")
    p.add_argument("--weights", required=True, help="backbone .safetensors (from_bundle)")
    p.add_argument("--augment", type=int, default=0, metavar="N",
                   help="cache N random views of each image instead of the image")
    a = p.parse_args(argv)
    onnx_path = a.cache / ONNX_FILE
    if not onnx_path.is_file():
        export_backbone(a.weights, onnx_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    for spec in a.specs:
        extract(a.cache, spec, session, a.augment)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
