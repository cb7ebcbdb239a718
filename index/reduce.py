"""PCA that the index and its queries share: fit once, store mean + components, apply to both.

Fitted from the covariance matrix (D x D, accumulated in chunks), so a million vectors
cost one pass and little memory. Outputs are re-normalized so inner product stays cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from artylyze.index.errors import IndexBuildError, IndexStoreError

CHUNK = 65_536


@dataclass(frozen=True)
class PCA:
    """Mean [D], components [d, D] (rows are unit principal axes) and their variance ratios."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def in_dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[0])

    def project(self, x: np.ndarray) -> np.ndarray:
        """Centered projection, no normalization (the clustering space uses this)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise IndexStoreError(f"PCA expects vectors of {self.in_dim} dims, got {list(x.shape)}")
        return (x - self.mean) @ self.components.T

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project and L2-normalize, so inner product in the reduced space is cosine."""
        y = self.project(x)
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return np.ascontiguousarray(y / np.maximum(norms, 1e-12), dtype=np.float32)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {f"{prefix}mean": self.mean, f"{prefix}components": self.components,
                f"{prefix}explained_variance_ratio": self.explained_variance_ratio}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> PCA:
        try:
            pca = cls(np.asarray(arrays[f"{prefix}mean"], np.float32),
                      np.asarray(arrays[f"{prefix}components"], np.float32),
                      np.asarray(arrays[f"{prefix}explained_variance_ratio"], np.float32))
        except KeyError as e:
            raise IndexStoreError(f"PCA parameters are missing array {e}") from e
        if pca.mean.ndim != 1 or pca.components.ndim != 2 or pca.components.shape[1] != len(
                pca.mean):
            raise IndexStoreError(
                f"PCA parameters have inconsistent shapes: mean {list(pca.mean.shape)}, "
                f"components {list(pca.components.shape)}")
        return pca


def fit_pca(x: np.ndarray, n_components: int | None = None,
            variance: float | None = None) -> PCA:
    """Fit a PCA keeping ``n_components`` axes, or the fewest reaching ``variance`` (0-1)."""
    n, dim = x.shape
    if (n_components is None) == (variance is None):
        raise IndexBuildError("give either a number of PCA components or a variance target")
    if n < 2:
        raise IndexBuildError("PCA needs at least 2 vectors")
    if variance is not None and not 0.0 < variance <= 1.0:
        raise IndexBuildError(f"PCA variance target must be in (0, 1], got {variance}")
    if n_components is not None and not 1 <= n_components <= dim:
        raise IndexBuildError(f"PCA components must be in 1..{dim} (the embedding size), "
                              f"got {n_components}")
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((dim, dim), np.float64)
    for start in range(0, n, CHUNK):
        c = x[start:start + CHUNK].astype(np.float64) - mean
        cov += c.T @ c
    cov /= max(n - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values = np.clip(values[order], 0.0, None)
    vectors = vectors[:, order].T
    ratio = values / max(values.sum(), 1e-30)
    if variance is not None:
        n_components = int(np.searchsorted(np.cumsum(ratio), variance - 1e-9) + 1)
    keep = min(int(n_components), dim, n)  # type: ignore[arg-type]
    # Fix each axis's sign (largest loading positive) so refits give the same coordinates.
    comps = vectors[:keep]
    signs = np.sign(comps[np.arange(keep), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    return PCA(mean.astype(np.float32), comps.astype(np.float32), ratio[:keep].astype(np.float32))
