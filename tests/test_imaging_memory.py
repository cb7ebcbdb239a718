"""Images with alpha (8- or 16-bit RGBA PNGs, LA, palettes with transparency) cost what an
RGB image of the same size costs (issue #24): they are flattened on white band by band,
reduced on the way, and the pixels are those of flattening the whole image first."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artylyze.imaging import BACKGROUND, RESIZE_POLICIES, _resize, load_image

SIDE = 3000  # 9 MP: large enough that the decoded image dominates the peak


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(path: Path, rgba: np.ndarray) -> Path:
    """A 16-bit RGBA PNG of ``rgba`` (uint8 [H, W, 4], scaled by 257); Pillow cannot write one."""
    height, width = rgba.shape[:2]
    wide = rgba.astype(">u2") * 257
    raw = b"".join(b"\x00" + wide[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                     + _chunk(b"IDAT", zlib.compress(raw, 1)) + _chunk(b"IEND", b""))
    return path


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGBA blocks of colour with varied alpha (some transparent, some opaque)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 4), dtype=np.uint8)
    blocks[..., 3][::3] = 255
    blocks[..., 3][1::5] = 0
    return np.kron(blocks, np.ones((8, 8, 1), np.uint8))[:height, :width]


def reference(rgba: np.ndarray, size: int | None, policy: str) -> np.ndarray:
    """The former pipeline: composite the whole image on white, then resize."""
    img = Image.fromarray(rgba, "RGBA")
    white = Image.new("RGBA", img.size, (*BACKGROUND, 255))
    rgb = Image.alpha_composite(white, img).convert("RGB")
    return np.asarray(_resize(rgb, size, policy) if size else rgb)


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
@pytest.mark.parametrize("shape", [(613, 1301), (2000, 1400), (2001, 3001)])
def test_alpha_is_flattened_as_before_whatever_the_policy(tmp_path, policy, shape) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (*shape, 4), dtype=np.uint8)
    for rgba in (picture(*shape), noise):
        path = png16(tmp_path / "a.png", rgba)
        got = load_image(path, 224, policy).pixels.astype(int)
        want = reference(rgba, 224, policy).astype(int)
        if policy != "center_crop" or min(shape) < 3 * 2 * 224:  # the very same pixels
            assert np.array_equal(got, want)
        # center_crop reduced by 2+: the blocks start at the image's corner, where Pillow
        # starts them at the edge of its sampling box around the crop (worst on noise)
        assert np.abs(got - want).mean() < 1.5 and np.abs(got - want).max() <= 12


def test_full_size_alpha_is_exactly_as_before(tmp_path) -> None:
    rgba = picture(531, 700)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png").pixels, reference(rgba, None, ""))
    la = Image.fromarray(rgba, "RGBA").convert("LA")
    la.save(tmp_path / "la.png")
    assert np.array_equal(load_image(tmp_path / "la.png").pixels,
                          np.asarray(Image.alpha_composite(
                              Image.new("RGBA", la.size, (255, 255, 255, 255)),
                              la.convert("RGBA")).convert("RGB")))


PEAK = """
import json, sys
from artylyze.imaging import load_image

def vm(name):
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(name + ":"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to now: the imports' own peak does not count
before = vm("VmRSS")
pixels = load_image(sys.argv[1], 224).pixels
print(json.dumps({"kib": vm("VmHWM") - before, "shape": list(pixels.shape)}))
"""


def peak_kib(path: Path) -> int:
    """Peak memory (KiB over what the interpreter had) of tagging ``path`` at 224 px."""
    done = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout)
    assert result["shape"] == [224, 224, 3]
    return result["kib"]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_16_bit_rgba_costs_what_8_bit_rgb_costs(tmp_path) -> None:
    rgba = picture(SIDE, SIDE)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png", compress_level=1)
    rgb = peak_kib(tmp_path / "rgb.png")
    alpha = peak_kib(png16(tmp_path / "rgba16.png", rgba))
    decoded = SIDE * SIDE * 4 // 1024  # Pillow holds RGB and RGBA in 4 bytes a pixel
    assert rgb > 0.8 * decoded  # the measure sees the decoded image
    assert alpha < 1.5 * rgb, (alpha, rgb)  # was 3.8x: four full-size copies
