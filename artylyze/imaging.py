"""Decode one image file into the RGB uint8 pixels a bundle eats: fast, and safe on hostile input.

``load_image`` runs this pipeline, in this order:

0. open without blocking and judge the open descriptor: only a regular, non-empty file of at
   most ``max_bytes`` is read (a FIFO swapped in after the walk is refused, not waited on);
1. open lazily (Pillow reads the header only) and refuse more than ``max_pixels`` pixels
   before a single pixel is decoded (decompression bombs);
2. JPEG only, when a ``size`` is asked: let libjpeg scale in the DCT domain (``draft``) by the
   largest of 1/2, 1/4, 1/8 that still keeps every side the resize policy needs >= ``size``;
3. decode fully (first frame of animations), so a truncated file fails here and not later;
4. apply the EXIF orientation (as ImageOps.exif_transpose does);
5. convert to 8-bit RGB: alpha is composited on white (in bands of rows, box-reduced by the
   factor the resize would start with, so RGBA costs what RGB does), 16-bit values are
   divided by 257, CMYK, palette, grey and 1-bit go through Pillow's ``convert``;
6. resize to ``size`` x ``size`` with Pillow's antialiased BICUBIC (``reducing_gap`` 3.0):
   "stretch" ignores the aspect ratio (how wikiart11 was made), "center_crop" scales the short
   side and crops the middle, "letterbox" fits the long side and pads with white.

BICUBIC rather than BILINEAR: Pillow scales the filter support with the reduction, so both are
free of aliasing; bicubic keeps brushwork sharper at the same cost, and it is timm's eval
interpolation for the EfficientNet family. ``reducing_gap`` 3.0 first box-reduces very large
images by an integer factor, which Pillow documents as indistinguishable from the full filter.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image

from artylyze.errors import ArtyLyzeError
from artylyze.options import MAX_BYTES, MAX_PIXELS

DEFAULT_MAX_PIXELS = MAX_PIXELS
# Largest file read at all: a 180 MP 16-bit RGBA TIFF stored raw is 1.4 GB.
DEFAULT_MAX_BYTES = MAX_BYTES
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
)
RESIZE_POLICIES = ("stretch", "center_crop", "letterbox")
FIT = "fit"  # thumbnails only: long side to ``size``, aspect kept, never enlarged
RESAMPLE = Image.Resampling.BICUBIC
REDUCING_GAP = 3.0
BAND_ROWS = 256  # rows of an image with alpha flattened at a time (see _flatten)
BACKGROUND = (255, 255, 255)
# Only the plugins behind IMAGE_EXTENSIONS: no EPS (Ghostscript) or other exotic parsers.
_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")
# What Pillow's decoders raise on broken input (found by tests/test_imaging_fuzz.py).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = (5, 6, 7, 8)
_WARNINGS_LOCK = threading.Lock()


class ImageError(ArtyLyzeError):
    """A file that cannot become pixels; ``str()`` names the file and says what is wrong,
    ``kind`` which way (empty, too_large, not_image, truncated, corrupt, unreadable)."""

    def __init__(self, path: str, reason: str, kind: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", kind=kind)
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:  # keep the fields across processes
        return type(self), (self.path, self.reason, self.kind)


@dataclass(frozen=True)
class Decoded:
    """Pixels plus the image's own size, which the resize to ``size`` hides."""

    pixels: np.ndarray  # uint8 [H, W, 3] RGB, C-contiguous
    width: int  # original width after EXIF orientation
    height: int  # original height after EXIF orientation


def load_image(
    source: str | os.PathLike | bytes | BinaryIO,
    size: int | None = None,
    resize: str = "stretch",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Decoded:
    """Decode ``source`` (a path, an open binary file, or the file's bytes) to RGB,
    ``[size, size, 3]`` if ``size``. An open file is closed when done.

    Raises ImageError for anything that is not a decodable image within ``max_pixels`` and
    ``max_bytes``, and ValueError for a bad ``size`` or ``resize`` (a caller bug, not a bad
    file).
    """
    return _load(source, size, resize, max_pixels, draft=True, max_bytes=max_bytes)


def load_thumbnail(source: str | os.PathLike, size: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """An upright RGB image at most ``size`` px on its long side, with the same guards as
    :func:`load_image`; JPEGs are decoded at a reduced DCT scale, so a page of thumbnails
    costs one small decode each, not a full-size copy of every scan."""
    return _load(source, size, FIT, max_pixels, draft=True)


def _load(source, size, resize, max_pixels, *, draft: bool,
          max_bytes: int = DEFAULT_MAX_BYTES) -> Decoded:
    """load_image with the JPEG draft switchable, so benchmarks can measure what it buys."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    if resize not in (*RESIZE_POLICIES, FIT):
        raise ValueError(f"resize must be one of {', '.join(RESIZE_POLICIES)}; got {resize!r}")
    fh, name = _open_source(source, max_bytes)
    with fh:
        try:
            with _quiet():
                img = Image.open(fh, formats=_FORMATS)
            with img:
                width, height = img.size
                if width * height > max_pixels:
                    reason = f"{width * height:,} pixels exceeds the limit of {max_pixels:,}"
                    raise ImageError(name, reason, "too_large")
                if draft and size is not None:
                    img.draft("RGB", _draft_request(width, height, size, resize))
                drafted = img.size
                img.load()
                upright, turned = _upright(img, drafted)
                if turned:
                    width, height = height, width
                full = upright.size
                factor = _reduce_factor(full, size, resize)
                rgb = _to_rgb(upright, factor)
                if size is not None:
                    if rgb.size != full:  # flattened and reduced on the way
                        rgb = _resize(rgb, size, resize, full, factor)
                    else:
                        rgb = _resize(rgb, size, resize)
                pixels = np.array(rgb, dtype=np.uint8)  # a writable, C-contiguous copy
        except Image.DecompressionBombError as exc:
            raise ImageError(name, _bomb_reason(exc, max_pixels), "too_large") from exc
        except _DECODE_ERRORS as exc:
            raise ImageError(name, *_reason(exc)) from exc
    return Decoded(pixels, width, height)


def _open_source(source: str | os.PathLike | bytes | BinaryIO,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[BinaryIO, str]:
    """A binary file object and the name errors should show; refuse what cannot be an image."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ImageError("<bytes>", "file is empty (0 bytes)", "empty")
        return io.BytesIO(source), "<bytes>"
    if hasattr(source, "read"):  # an open file (from open_image_file)
        return source, os.fsdecode(getattr(source, "name", "<file>"))
    return open_image_file(source, max_bytes), os.fsdecode(source)


def _nonblocking(path: str, flags: int) -> int:
    """open() a FIFO without waiting for a writer; regular files ignore the flag."""
    return os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))


def open_image_file(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> BinaryIO:
    """Open ``path`` for reading, judged on the open descriptor, never by name first: a file
    swapped for a FIFO after the walk is refused, not waited on forever.

    Refuses anything but a regular, non-empty file of at most ``max_bytes`` (a sparse or
    runaway file must not be read at all; reads then stream, never the whole file at once).
    """
    name = os.fsdecode(path)
    try:
        f = open(name, "rb", opener=_nonblocking)  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise ImageError(name, (exc.strerror or str(exc)).lower(), "unreadable") from exc
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(name, "is a directory, not a file", "unreadable")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(name, "not a regular file", "unreadable")
        if st.st_size == 0:
            raise ImageError(name, "file is empty (0 bytes)", "empty")
        if st.st_size > max_bytes:
            raise ImageError(name, f"{st.st_size:,} bytes exceeds the limit of {max_bytes:,} "
                                   "bytes (--max-bytes)", "too_large")
    except BaseException:
        f.close()
        raise
    return f


@contextmanager
def _quiet() -> Iterator[None]:
    """Mute Pillow's warnings while it parses headers and EXIF.

    They are DecompressionBombWarning (max_pixels is our guard) and complaints about corrupt
    metadata we do not use; broken pixels still raise. catch_warnings swaps process-wide
    state, so a lock keeps our own threads from interleaving it; decoding stays outside.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _upright(img: Image.Image, drafted: tuple[int, int]) -> tuple[Image.Image, bool]:
    """Apply the EXIF orientation; also say whether width and height traded places."""
    with _quiet():
        orientation = img.getexif().get(ExifTags.Base.Orientation)
    # TIFF: Pillow applies the orientation itself and drops the tag; before Pillow 13 it did so
    # during load(), so there the decoded size turns.
    turned = orientation in _SWAPS_SIDES or img.size == drafted[::-1] != drafted
    return (img.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else img), turned


def _draft_request(width: int, height: int, size: int, policy: str) -> tuple[int, int]:
    """The smallest decode size whose sides still cover what the policy samples from."""
    if policy in ("letterbox", FIT):  # only the long side must reach size
        scale = size / max(width, height)
        return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))
    return size, size  # stretch needs both sides >= size; center_crop the short one, same thing


def _reduce_factor(full: tuple[int, int], size: int | None, policy: str) -> tuple[int, int]:
    """The integer box-reduction per axis that Pillow's resize (``reducing_gap``) would
    start with, so an image with alpha can be reduced while it is flattened."""
    if size is None:
        return 1, 1
    width, height = full
    if policy == "center_crop":
        side = min(full)
        out = (side, side), (size, size)
    elif policy in ("letterbox", FIT):
        scale = min(1.0, size / max(full)) if policy == FIT else size / max(full)
        out = full, (max(1, round(width * scale)), max(1, round(height * scale)))
    else:
        out = full, (size, size)
    (w, h), (ow, oh) = out
    return max(1, int(w / ow / REDUCING_GAP)), max(1, int(h / oh / REDUCING_GAP))


def _to_rgb(img: Image.Image, factor: tuple[int, int] = (1, 1)) -> Image.Image:
    """8-bit RGB from any mode Pillow opens; transparency becomes white. An image with
    alpha is also reduced by ``factor`` (see :func:`_flatten`)."""
    if img.mode == "RGB":
        return img
    if img.mode == "I" or img.mode.startswith("I;16"):  # 16-bit grey: /257, not clipped at 255
        grey = (np.clip(np.asarray(img), 0, 65535).astype(np.uint32) + 128) // 257
        return Image.fromarray(grey.astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":  # float grey on Pillow's 0..255 scale
        grey = np.nan_to_num(np.asarray(img), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert("RGB")
    if {"A", "a"} & set(img.getbands()) or "transparency" in img.info:
        return _flatten(img, factor)
    return img.convert("RGB")


def _flatten(img: Image.Image, factor: tuple[int, int] = (1, 1)) -> Image.Image:
    """Composite on white, ``BAND_ROWS`` rows at a time, each band box-reduced by ``factor``.

    Compositing the whole image at once holds four full-size copies (the white canvas, the
    RGBA conversion, the composite, the RGB result): a 144 MP RGBA PNG, 8- or 16-bit,
    peaked at 2.36 GB where 8-bit RGB takes 670 MB. Band by band, with the reduction that
    the resize would start with anyway, the peak is the decoded image and a few bands:
    what an RGB image costs. Bands start at multiples of the vertical factor, so the reduced
    blocks are those of reducing the whole composite."""
    (fx, fy), (width, height) = factor, img.size
    out = Image.new("RGB", (math.ceil(width / fx), math.ceil(height / fy)))
    step = max(1, BAND_ROWS // fy) * fy
    for top in range(0, height, step):
        band = img.crop((0, top, width, min(height, top + step)))
        white = Image.new("RGBA", band.size, (*BACKGROUND, 255))
        flat = Image.alpha_composite(white, band.convert("RGBA")).convert("RGB")
        out.paste(flat.reduce(factor) if factor != (1, 1) else flat, (0, top // fy))
    return out


def _resize(img: Image.Image, size: int, policy: str, full: tuple[int, int] | None = None,
            factor: tuple[int, int] = (1, 1)) -> Image.Image:
    """``size`` x ``size`` RGB by the named policy (see the module docstring). ``img`` may
    be an image of ``full`` size already box-reduced by ``factor`` (by :func:`_flatten`):
    the boxes are worked out on ``full`` and divided by ``factor``, which is what Pillow's
    resize does after its own reduce."""
    width, height = full or img.size
    sx, sy = factor

    def box(left: float, top: float, right: float, bottom: float) -> tuple[float, ...]:
        return (left / sx, top / sy, min(right / sx, img.width), min(bottom / sy, img.height))

    if policy == "stretch":
        return img.resize((size, size), RESAMPLE, box=box(0, 0, width, height),
                          reducing_gap=REDUCING_GAP)
    if policy == FIT:
        scale = min(1.0, size / max(width, height))
        fit = (max(1, round(width * scale)), max(1, round(height * scale)))
        return img.resize(fit, RESAMPLE, box=box(0, 0, width, height),
                          reducing_gap=REDUCING_GAP)
    if policy == "center_crop":
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return img.resize((size, size), RESAMPLE, box=box(left, top, left + side, top + side),
                          reducing_gap=REDUCING_GAP)
    scale = size / max(width, height)
    fit = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = Image.new("RGB", (size, size), BACKGROUND)
    inner = img.resize(fit, RESAMPLE, box=box(0, 0, width, height), reducing_gap=REDUCING_GAP)
    canvas.paste(inner, ((size - fit[0]) // 2, (size - fit[1]) // 2))
    return canvas


def _bomb_reason(exc: Exception, max_pixels: int) -> str:
    """Pillow's own guard fired (it checks on open, before ours): say it our way when we can."""
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(exc))
    if not found:
        return f"refused as a decompression bomb ({exc})"
    pixels, pillow_limit = int(found[1]), int(found[2])
    if pixels > max_pixels:
        return f"{pixels:,} pixels exceeds the limit of {max_pixels:,}"
    return f"{pixels:,} pixels exceeds Pillow's limit of {pillow_limit:,} (Image.MAX_IMAGE_PIXELS)"


def _reason(exc: Exception) -> tuple[str, str]:
    """A short, file-name-free description of a decoder failure, and its kind."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image (cannot identify image file)", "not_image"
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return "truncated image file", "truncated"
    return f"corrupt or unsupported image ({type(exc).__name__}: {text})", "corrupt"
