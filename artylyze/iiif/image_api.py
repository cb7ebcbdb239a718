"""IIIF Image API (2 and 3): read an ``info.json`` and choose the request that suits the model.

The model needs an image whose sides cover ``target`` pixels (both sides for "stretch" and
"center_crop", the long side for "letterbox"); more only costs the server and the network.
What a server may be asked depends on its compliance level and listed features:

1. ``!w,h`` (sizeByConfinedWh: level 2, or listed in extraFeatures/supports);
2. ``w,`` (sizeByW: level 1 and up);
3. the smallest of the listed ``sizes`` that is large enough, which is all a level-0 server
   (a static tile set) serves; a single tile of the whole image at a scale factor counts too;
4. ``max`` (v3) / ``full`` (v2): the whole image, as the last resort.

An image no larger than needed is always asked at ``max``/``full`` (Image API 3 forbids
upscaling without ``^``, and upscaling adds nothing).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

LEVEL_RE = re.compile(r"level([012])")
CONFINED = "sizeByConfinedWh"
BY_W = "sizeByW"


@dataclass(frozen=True)
class ImageService:
    """What a request needs from an info.json."""

    id: str
    version: int  # 2 or 3
    level: int
    features: frozenset[str]
    width: int | None
    height: int | None
    sizes: tuple[tuple[int, int], ...] = ()
    tiles: tuple[tuple[int, int, tuple[int, ...]], ...] = ()  # (width, height, scaleFactors)


@dataclass(frozen=True)
class ImageRequest:
    """One Image API request: the URL, and its region and size as the row records them."""

    url: str
    region: str
    size: str


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_info(info: dict[str, Any], fallback_id: str) -> ImageService:
    """An :class:`ImageService` from an info.json (v2 ``@id``/profile list, v3 ``id``)."""
    context = str(info.get("@context", ""))
    version = 3 if ("image/3" in context or info.get("type") == "ImageService3") else 2
    sid = info.get("id") or info.get("@id") or fallback_id
    profile = info.get("profile")
    level, features = 0, set()
    for item in profile if isinstance(profile, list) else [profile]:
        if isinstance(item, str) and (m := LEVEL_RE.search(item)):
            level = max(level, int(m.group(1)))
        elif isinstance(item, dict):
            features.update(f for f in item.get("supports", []) if isinstance(f, str))
    features.update(f for f in info.get("extraFeatures", []) or [] if isinstance(f, str))
    sizes = tuple((w, h) for s in info.get("sizes", []) or [] if isinstance(s, dict)
                  and (w := _int(s.get("width"))) and (h := _int(s.get("height"))))
    tiles = tuple((w, _int(t.get("height")) or w,
                   tuple(f for f in t.get("scaleFactors", []) if _int(f)))
                  for t in info.get("tiles", []) or [] if isinstance(t, dict)
                  and (w := _int(t.get("width"))))
    return ImageService(str(sid).rstrip("/"), version, level, frozenset(features),
                        _int(info.get("width")), _int(info.get("height")), sizes, tiles)


def needed_scale(width: int, height: int, target: int, policy: str) -> float:
    """The scale that makes the image just cover what the resize policy samples from."""
    side = max(width, height) if policy == "letterbox" else min(width, height)
    return target / side


def _covers(w: int, h: int, target: int, policy: str) -> bool:
    return (max(w, h) if policy == "letterbox" else min(w, h)) >= target


def choose_request(service: ImageService, target: int, policy: str) -> ImageRequest:
    """The cheapest request that still gives the model what it needs (see the module doc)."""
    base, full = service.id, "max" if service.version == 3 else "full"
    w, h = service.width, service.height
    sized = service.level >= 1 or bool({CONFINED, BY_W} & service.features)
    if w is None or h is None:
        return _request(base, "full", full)
    scale = needed_scale(w, h, target, policy)
    if not sized:  # level 0: only the listed sizes are sure to exist
        listed = sorted(set(service.sizes) | set(_whole_tiles(service)),
                        key=lambda s: s[0] * s[1])
        pick = next((s for s in listed if _covers(*s, target, policy)),
                    listed[-1] if listed else None)
        if pick is not None:
            size = f"{pick[0]},{pick[1]}" if service.version == 3 else f"{pick[0]},"
            return _request(base, "full", size)
        return _request(base, "full", full)
    if scale >= 1:
        return _request(base, "full", full)
    sw, sh = math.ceil(w * scale), math.ceil(h * scale)
    if service.level >= 2 or CONFINED in service.features:
        return _request(base, "full", f"!{sw},{sh}")
    return _request(base, "full", f"{sw},")


def _whole_tiles(service: ImageService) -> list[tuple[int, int]]:
    """Sizes at which the whole image is one tile (a level-0 server has those files too)."""
    w, h = service.width, service.height
    out = []
    for tw, th, factors in service.tiles:
        for f in factors:
            sw, sh = math.ceil(w / f), math.ceil(h / f)  # type: ignore[operator]
            if sw <= tw and sh <= th:
                out.append((sw, sh))
    return out


def _request(base: str, region: str, size: str) -> ImageRequest:
    return ImageRequest(f"{base}/{region}/{size}/0/default.jpg", region, size)
