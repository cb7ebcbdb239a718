"""The second check: is a candidate pair the same work, or another work of the same artist?

Embeddings place a painter's works close together (that is what they are for), so a
threshold on them alone flags merely similar works. This check looks at the pixels:

1. ORB keypoints on a grey copy whose long side is ``SIDE`` px (rotation-invariant, so a
   scan fed sideways still matches), matched with Lowe's ratio test;
2. a similarity transform (rotation, scale, shift) fitted by RANSAC, refined to a
   homography on its inliers (a photograph of the painting is a perspective view);
3. the candidate warped onto the other and compared: the normalised cross-correlation of
   the two grey images, band-passed, over the overlap (at least ``MIN_OVERLAP`` of it).

Step 3 is what tells the works apart: two works of one series can share a frame, a
signature or straight edges that align (many inliers), but not their painted content. The
band-pass (a blur of ``BLUR_SIGMA`` px less one of ``BACKGROUND_SIGMA`` px, at 256 px)
drops what is shared by layout alone: the dark ground and oval vignette of a series of
pastel portraits correlated 0.6-0.8 on the plain blurred images, 0.2-0.5 band-passed,
while the gallery's copies of one painting stay at 0.76-1.0.
The score is the correlation (0..1, 0 when no alignment was found); ``threshold`` was chosen
on a validation set (``benchmarks/duplicates.py``; docs/duplicates.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIDE = 256
FEATURES = 300
RATIO = 0.8
MIN_INLIERS = 6
MIN_OVERLAP = 0.25
BLUR_SIGMA = 2.0
BACKGROUND_SIGMA = 8.0
#: Chosen on the validation split (benchmarks/duplicates.py --split val --sweep): no false
#: pair there from 0.40 up (0.30: precision 0.983), recall 0.938 at 0.40-0.50, 0.936 at 0.55;
#: 0.55 keeps a margin over the gallery's pastel-portrait series (up to 0.49).
THRESHOLD = 0.55
CACHE = 2048


@dataclass
class Features:
    """What the check needs of one image: keypoints, descriptors and the blurred grey image."""

    points: np.ndarray  # float32 [n, 2]
    descriptors: np.ndarray | None  # uint8 [n, 32]
    grey: np.ndarray  # float32 [h, w], band-passed


def features(img: Image.Image) -> Features:
    """Features of an RGB (or any mode) PIL image."""
    import cv2

    grey = np.asarray(img.convert("L"))
    scale = SIDE / max(grey.shape)
    size = (max(8, round(grey.shape[1] * scale)), max(8, round(grey.shape[0] * scale)))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    keypoints, desc = cv2.ORB_create(FEATURES).detectAndCompute(grey, None)
    points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    grey = grey.astype(np.float32)
    band = cv2.GaussianBlur(grey, (0, 0), BLUR_SIGMA) - \
        cv2.GaussianBlur(grey, (0, 0), BACKGROUND_SIGMA)
    return Features(points, desc, band)


def match_score(a: Features, b: Features) -> float:
    """How well ``b`` aligned onto ``a`` correlates with it: 0 (no alignment) .. 1."""
    import cv2

    if a.descriptors is None or b.descriptors is None or \
            len(a.points) < MIN_INLIERS or len(b.points) < MIN_INLIERS:
        return 0.0
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < MIN_INLIERS:
        return 0.0
    pa = a.points[[m.queryIdx for m in good]]
    pb = b.points[[m.trainIdx for m in good]]
    _, mask = cv2.estimateAffinePartial2D(pa, pb, method=cv2.RANSAC,
                                          ransacReprojThreshold=SIDE / 50)
    if mask is None or mask.sum() < MIN_INLIERS:
        return 0.0
    inl = mask.ravel().astype(bool)
    homography, _ = cv2.findHomography(pa[inl], pb[inl], 0)
    if homography is None:
        return 0.0
    h, w = a.grey.shape
    flags = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
    warped = cv2.warpPerspective(b.grey, homography, (w, h), flags=flags)
    valid = cv2.warpPerspective(np.ones_like(b.grey), homography, (w, h),
                                flags=cv2.WARP_INVERSE_MAP | cv2.INTER_NEAREST) > 0
    if valid.mean() < MIN_OVERLAP:
        return 0.0
    x, y = a.grey[valid], warped[valid]
    x, y = x - x.mean(), y - y.mean()
    corr = float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum() + 1e-9))
    return max(0.0, corr)


class Checker:
    """Scores pairs of items by index, loading each item's features once (an LRU of
    ``cache`` items: pairs come sorted by their first item, so hits are frequent)."""

    def __init__(self, load: Callable[[int], Image.Image | None], cache: int = CACHE) -> None:
        self.load = load
        self.cache = cache
        self._seen: OrderedDict[int, Features | None] = OrderedDict()

    def features(self, i: int) -> Features | None:
        if i in self._seen:
            self._seen.move_to_end(i)
            return self._seen[i]
        img = self.load(i)
        f = None if img is None else features(img)
        self._seen[i] = f
        if len(self._seen) > self.cache:
            self._seen.popitem(last=False)
        return f

    def score(self, i: int, j: int) -> float | None:
        """The pair's score, None when an image could not be read."""
        a, b = self.features(i), self.features(j)
        if a is None or b is None:
            return None
        forward = match_score(a, b)
        return forward if forward >= THRESHOLD else max(forward, match_score(b, a))
