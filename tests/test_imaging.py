"""load_image on real files that Pillow writes: every odd mode, every broken input, every policy."""

from __future__ import annotations

import copy
import csv
import io
import os
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from artylyze import imaging
from artylyze.errors import ArtyLyzeError
from artylyze.imaging import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    Decoded,
    ImageError,
    load_image,
)

WHITE, RED, GREEN, BLUE = (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save(img: Image.Image, path: Path, **params) -> Path:
    img.save(path, **params)
    return path


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG that declares a size but holds (almost) no pixel data: a bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))


def pixel(decoded: Decoded, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in decoded.pixels[y, x])


def assert_close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int) -> None:
    assert max(abs(a - e) for a, e in zip(actual, expected, strict=True)) <= tol, (actual, expected)


# --- output contract ---------------------------------------------------------------------


def test_full_image_keeps_size_and_is_contiguous_uint8(tmp_path):
    path = save(Image.new("RGB", (31, 17), RED), tmp_path / "red.png")
    out = load_image(path)
    assert out.pixels.shape == (17, 31, 3)
    assert out.pixels.dtype == np.uint8
    assert out.pixels.flags.c_contiguous and out.pixels.flags.writeable
    assert (out.width, out.height) == (31, 17)
    assert (out.pixels == RED).all()


def test_str_path_pathlike_and_bytes_give_the_same_pixels(tmp_path):
    path = save(Image.new("RGB", (40, 30), BLUE), tmp_path / "blue.jpg", quality=95)
    by_path = load_image(path, size=16)
    by_str = load_image(str(path), size=16)
    by_bytes = load_image(path.read_bytes(), size=16)
    assert by_path.pixels.shape == (16, 16, 3)
    assert np.array_equal(by_path.pixels, by_str.pixels)
    assert np.array_equal(by_path.pixels, by_bytes.pixels)
    assert (by_bytes.width, by_bytes.height) == (40, 30)


def test_image_extensions_are_lower_case_with_dot():
    expected = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
    assert isinstance(IMAGE_EXTENSIONS, frozenset)
    assert set(IMAGE_EXTENSIONS) == expected


# --- modes: everything ends as RGB, transparency on white ----------------------------------


def test_rgba_transparent_becomes_white_and_half_alpha_blends(tmp_path):
    img = Image.new("RGBA", (3, 1))
    img.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 128)])
    out = load_image(save(img, tmp_path / "rgba.png"))
    assert pixel(out, 0, 0) == WHITE
    assert pixel(out, 1, 0) == RED
    assert_close(pixel(out, 2, 0), (127, 127, 127), tol=1)


def test_la_transparent_becomes_white(tmp_path):
    img = Image.new("LA", (2, 1))
    img.putdata([(0, 0), (50, 255)])
    out = load_image(save(img, tmp_path / "la.png"))
    assert pixel(out, 0, 0) == WHITE
    assert pixel(out, 1, 0) == (50, 50, 50)


def test_palette_with_transparent_index_becomes_white(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, *RED] + [0] * (3 * 254))
    img.putdata([0, 1])
    out = load_image(save(img, tmp_path / "p.png", transparency=0))
    assert pixel(out, 0, 0) == WHITE
    assert pixel(out, 1, 0) == RED


def test_pa_transparent_becomes_white(tmp_path):
    img = Image.new("PA", (2, 1))
    img.putpalette([*GREEN, *BLUE] + [0] * (3 * 254))
    img.putdata([(0, 0), (1, 255)])
    out = load_image(save(img, tmp_path / "pa.tif"))
    assert pixel(out, 0, 0) == WHITE
    assert pixel(out, 1, 0) == BLUE


@pytest.mark.parametrize("name", ["cmyk.tif", "cmyk.jpg"])
def test_cmyk_pure_cyan_is_rgb_cyan(tmp_path, name):
    path = save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), tmp_path / name)
    out = load_image(path, size=8)
    assert_close(pixel(out, 4, 4), (0, 255, 255), tol=3)


@pytest.mark.parametrize(("mode", "name"), [("I;16", "g16.png"), ("I;16B", "g16b.tif")])
def test_16_bit_grey_scales_by_257_without_clipping(tmp_path, mode, name):
    img = Image.new(mode, (4, 1))
    img.putdata([0, 257 * 100, 32768, 65535])
    out = load_image(save(img, tmp_path / name))
    assert [pixel(out, x, 0) for x in range(4)] == [(0,) * 3, (100,) * 3, (128,) * 3, (255,) * 3]


def test_32_bit_int_grey_is_read_as_16_bit_range(tmp_path):
    img = Image.new("I", (4, 1))
    img.putdata([-5, 257 * 7, 65535, 70000])
    out = load_image(save(img, tmp_path / "i32.tif"))
    assert [pixel(out, x, 0)[0] for x in range(4)] == [0, 7, 255, 255]


def test_float_grey_is_clipped_to_0_255_and_nan_is_black(tmp_path):
    img = Image.new("F", (4, 1))
    img.putdata([-3.0, 127.6, 300.0, float("nan")])
    out = load_image(save(img, tmp_path / "f.tif"))
    assert [pixel(out, x, 0)[0] for x in range(4)] == [0, 128, 255, 0]


def test_one_bit_is_black_and_white(tmp_path):
    img = Image.new("1", (2, 1))
    img.putdata([0, 1])
    out = load_image(save(img, tmp_path / "bits.png"))
    assert pixel(out, 0, 0) == (0, 0, 0)
    assert pixel(out, 1, 0) == WHITE


def test_grey_jpeg_through_draft_is_grey_rgb(tmp_path):
    path = save(Image.new("L", (800, 600), 90), tmp_path / "grey.jpg", quality=95)
    out = load_image(path, size=32)
    assert out.pixels.shape == (32, 32, 3)
    assert_close(pixel(out, 16, 16), (90, 90, 90), tol=2)


def test_bmp_and_lossless_webp_rgba(tmp_path):
    bmp = save(Image.new("RGB", (5, 5), GREEN), tmp_path / "g.bmp")
    assert pixel(load_image(bmp), 2, 2) == GREEN
    webp = save(Image.new("RGBA", (5, 5), (0, 0, 255, 0)), tmp_path / "t.webp", lossless=True)
    assert pixel(load_image(webp), 2, 2) == WHITE


@pytest.mark.parametrize("name", ["anim.gif", "anim.webp", "anim.png"])
def test_animations_use_the_first_frame(tmp_path, name):
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    params = {"lossless": True} if name.endswith(".webp") else {}
    path = save(frames[0], tmp_path / name, save_all=True, append_images=frames[1:], **params)
    with Image.open(path) as check:
        assert check.n_frames == 2
    assert_close(pixel(load_image(path), 4, 4), RED, tol=2)


# --- EXIF orientation ------------------------------------------------------------------------


def oriented(path: Path, size: tuple[int, int], orientation: int) -> Path:
    """White image with a red 8x8 block in the stored top-left corner."""
    img = Image.new("RGB", size, WHITE)
    img.paste(RED, (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    params = {"quality": 95} if path.suffix == ".jpg" else {}
    return save(img, path, exif=exif, **params)


@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".png", ".webp"])
def test_exif_orientation_6_rotates_and_swaps_size(tmp_path, suffix):
    out = load_image(oriented(tmp_path / f"rot{suffix}", (40, 20), orientation=6))
    assert (out.width, out.height) == (20, 40)
    assert out.pixels.shape == (40, 20, 3)
    assert_close(pixel(out, 16, 3), RED, tol=40)  # stored top-left is now top-right
    assert_close(pixel(out, 3, 3), WHITE, tol=10)
    assert_close(pixel(out, 3, 36), WHITE, tol=10)


def test_exif_orientation_reports_original_size_after_draft(tmp_path):
    path = oriented(tmp_path / "rot_big.jpg", (800, 400), orientation=6)
    out = load_image(path, size=32)
    assert out.pixels.shape == (32, 32, 3)
    assert (out.width, out.height) == (400, 800)


def test_exif_orientation_3_keeps_size_and_flips_corner(tmp_path):
    out = load_image(oriented(tmp_path / "r180.jpg", (40, 20), orientation=3))
    assert (out.width, out.height) == (40, 20)
    assert_close(pixel(out, 36, 16), RED, tol=40)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.png"
    rng = np.random.default_rng(orientation)
    img = Image.fromarray(rng.integers(0, 255, (6, 10, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    save(img, path, exif=exif)
    with Image.open(path) as reference:
        expected = np.asarray(ImageOps.exif_transpose(reference))
    out = load_image(path)
    assert np.array_equal(out.pixels, expected)
    assert (out.height, out.width) == expected.shape[:2]


def test_corrupt_exif_is_quiet_and_pixels_still_load(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "a description long enough to be cut off " * 2
    path = save(Image.new("RGB", (16, 8), RED), tmp_path / "cut.jpg", exif=exif.tobytes()[:-40])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Image.open(path) as direct:
            direct.getexif()
        assert caught, "Pillow itself should complain about this EXIF"
        caught.clear()
        out = load_image(path)
    assert caught == []
    assert out.pixels.shape == (16, 8, 3)  # the orientation entry survived the cut
    assert (out.width, out.height) == (8, 16)


# --- resize policies -------------------------------------------------------------------------


def thirds(width: int, height: int) -> Image.Image:
    """Red | green | blue vertical bands of equal width."""
    img = Image.new("RGB", (width, height), GREEN)
    img.paste(RED, (0, 0, width // 3, height))
    img.paste(BLUE, (2 * width // 3, 0, width, height))
    return img


def test_stretch_ignores_aspect_ratio(tmp_path):
    out = load_image(save(thirds(90, 30), tmp_path / "t.png"), size=30, resize="stretch")
    assert out.pixels.shape == (30, 30, 3)
    assert (pixel(out, 2, 15), pixel(out, 15, 15), pixel(out, 27, 15)) == (RED, GREEN, BLUE)


def test_center_crop_keeps_the_middle_square(tmp_path):
    out = load_image(save(thirds(90, 30), tmp_path / "t.png"), size=10, resize="center_crop")
    assert out.pixels.shape == (10, 10, 3)
    assert all(pixel(out, x, 5) == GREEN for x in range(2, 8))


def test_letterbox_fits_and_pads_with_white(tmp_path):
    out = load_image(save(Image.new("RGB", (40, 20), RED), tmp_path / "r.png"), 20, "letterbox")
    column = [pixel(out, 10, y) for y in range(20)]
    assert column == [WHITE] * 5 + [RED] * 10 + [WHITE] * 5
    assert (out.width, out.height) == (40, 20)


@pytest.mark.parametrize(("size", "resize"), [(0, "stretch"), (-1, "stretch"), (2.5, "stretch"),
                                              (True, "stretch"), (8, "squash")])
def test_bad_size_or_policy_is_a_caller_error(tmp_path, size, resize):
    path = save(Image.new("RGB", (4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="size|resize"):
        load_image(path, size=size, resize=resize)


# --- JPEG draft --------------------------------------------------------------------------------


@pytest.fixture()
def painting_jpeg(tmp_path, wikiart) -> Path:
    """A real painting upscaled to 1600x1200: a scan far bigger than the model input."""
    first = sorted((wikiart / "images").glob("*/*.jpg"))[0]
    with Image.open(first) as img:
        big = img.convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
    return save(big, tmp_path / "scan.jpg", quality=90)


@pytest.fixture()
def draft_sizes(monkeypatch) -> list[tuple[int, int]]:
    """Records the size each JPEG is decoded at after draft(), once per image."""
    sizes: list[tuple[int, int]] = []
    seen: set[int] = set()
    original = Image.Image.load

    def spy(self):
        if self.format == "JPEG" and self.decoderconfig and id(self) not in seen:
            seen.add(id(self))
            sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    return sizes


@pytest.mark.parametrize("resize", imaging.RESIZE_POLICIES)
def test_draft_matches_full_decode(painting_jpeg, draft_sizes, resize):
    fast = load_image(painting_jpeg, size=96, resize=resize)
    full = imaging._load(painting_jpeg, 96, resize, DEFAULT_MAX_PIXELS, draft=False)
    assert fast.pixels.shape == full.pixels.shape == (96, 96, 3)
    assert (fast.width, fast.height) == (full.width, full.height) == (1600, 1200)
    diff = np.abs(fast.pixels.astype(int) - full.pixels.astype(int))
    assert diff.mean() < 2.0
    assert draft_sizes and all(s < (1600, 1200) for s in draft_sizes)  # draft really happened


def test_draft_keeps_both_sides_at_least_size_for_stretch(tmp_path, draft_sizes):
    path = save(Image.new("RGB", (2000, 500), RED), tmp_path / "wide.jpg")
    load_image(path, size=224, resize="stretch")
    assert draft_sizes == [(1000, 250)]  # 1/2, not 1/8: the short side must stay >= 224


def test_draft_for_letterbox_only_needs_the_long_side(tmp_path, draft_sizes):
    path = save(Image.new("RGB", (2000, 500), RED), tmp_path / "wide.jpg")
    load_image(path, size=224, resize="letterbox")
    assert draft_sizes == [(250, 63)]


# --- broken input: one error type, a message that names the file and the problem ------------


def raises(source, match: str, **kwargs) -> ImageError:
    with pytest.raises(ImageError, match=match) as info:
        load_image(source, **kwargs)
    return info.value


def test_truncated_jpeg(tmp_path):
    data = encode(thirds(300, 200), "JPEG", quality=90)
    path = tmp_path / "x.jpg"
    path.write_bytes(data[: len(data) // 2])
    err = raises(path, match=r"x\.jpg: truncated image file")
    assert err.path == str(path) and err.reason == "truncated image file"
    assert isinstance(err.__cause__, OSError)


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data[: len(data) // 2])
    raises(path, match=r"x\.png: truncated image file")


def test_corrupt_png_data(tmp_path):
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    path = tmp_path / "bad.png"
    path.write_bytes(data[:100] + b"\x00" * 50 + data[150:])
    raises(path, match=r"bad\.png: corrupt or unsupported image \(OSError: broken data stream")


def test_not_an_image(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("just some words\n")
    err = raises(path, match=r"x\.txt: not an image \(cannot identify image file\)")
    assert isinstance(err.__cause__, Image.UnidentifiedImageError)


def test_formats_outside_the_list_are_refused(tmp_path):
    path = save(Image.new("RGB", (8, 8), RED), tmp_path / "x.pcx")
    raises(path, match=r"x\.pcx: not an image")


def test_empty_file_and_empty_bytes(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    raises(path, match=r"empty\.jpg: file is empty \(0 bytes\)")
    raises(b"", match=r"<bytes>: file is empty \(0 bytes\)")


def test_missing_file(tmp_path):
    err = raises(tmp_path / "gone.jpg", match=r"gone\.jpg: no such file or directory")
    assert isinstance(err.__cause__, FileNotFoundError)


def test_directory(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    raises(tmp_path / "folder.jpg", match=r"folder\.jpg: is a directory")


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    raises(tmp_path / "pipe.jpg", match=r"pipe\.jpg: not a regular file")


def test_unreadable_file(tmp_path, monkeypatch):
    path = save(Image.new("RGB", (4, 4)), tmp_path / "unreadable.png")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make open() fail the way it does for others

        def denied(file, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(file))

        monkeypatch.setattr(imaging, "open", denied, raising=False)
    err = raises(path, match=r"unreadable\.png: permission denied")
    assert isinstance(err.__cause__, PermissionError)


def test_image_error_is_an_artylyze_error_and_survives_copy(tmp_path):
    err = ImageError("a/b.jpg", "truncated image file")
    assert isinstance(err, ArtyLyzeError)
    assert str(err) == "a/b.jpg: truncated image file"
    clone = copy.deepcopy(err)
    assert (clone.path, clone.reason, str(clone)) == (err.path, err.reason, str(err))


# --- decompression bombs ---------------------------------------------------------------------


def test_max_pixels_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data[:60])  # header intact, pixel data cut: decoding would say "truncated"
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self))
    err = raises(path, r"big\.png: 10,000 pixels exceeds the limit of 9,999", max_pixels=9_999)
    assert loads == [] and err.__cause__ is None


def test_max_pixels_limit_is_inclusive(tmp_path):
    path = save(Image.new("RGB", (100, 100), RED), tmp_path / "ok.png")
    assert load_image(path, max_pixels=10_000).pixels.shape == (100, 100, 3)


def test_pillow_bomb_error_is_reported_as_our_limit(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(20_000, 10_000))
    err = raises(path, match=r"big\.png: 200,000,000 pixels exceeds the limit of 180,000,000")
    assert isinstance(err.__cause__, Image.DecompressionBombError)
    raises(path, match="exceeds Pillow's limit", max_pixels=250_000_000)


def test_no_pillow_bomb_warning_leaks(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(10_000, 10_000))  # above Pillow's warning threshold only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raises(path, match=r"big\.png: 100,000,000 pixels exceeds the limit of 50,000,000",
               max_pixels=50_000_000)
        raises(path, match=r"big\.png: truncated image file")  # allowed, so decoded: no data
    assert [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []


# --- threads -------------------------------------------------------------------------------


def test_threads_get_the_same_pixels_and_leave_warning_filters_alone(tmp_path):
    paths = [save(thirds(60 + i, 40), tmp_path / f"t{i}.png") for i in range(4)]
    paths += [oriented(tmp_path / f"o{i}.jpg", (400, 200), orientation=6 + i % 3) for i in range(4)]
    expected = [load_image(p, size=16).pixels for p in paths]
    before = list(warnings.filters)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda p: load_image(p, size=16).pixels, paths * 4))
    assert all(np.array_equal(g, expected[i % len(paths)]) for i, g in enumerate(got))
    assert warnings.filters == before


# --- shipped examples ----------------------------------------------------------------------


def test_examples_are_listed_and_decode():
    examples = Path(__file__).resolve().parents[1] / "examples"
    with open(examples / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and len({r["style"] for r in rows}) == 11
    for row in rows:
        out = load_image(examples / row["path"], size=64)
        assert out.pixels.shape == (64, 64, 3) and (out.width, out.height) == (224, 224)
