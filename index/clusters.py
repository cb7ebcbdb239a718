"""Clusters of a collection: a KMeans sweep (elbow, silhouette, Davies-Bouldin) and a Gaussian
mixture whose soft memberships are a painting's influences.

Both run in a low-dimensional PCA space (32 dims by default), fitted on a sample at most
``FIT_MAX`` rows so a million-row collection still clusters in seconds. The mixture is kept
as plain arrays (npz, no pickle) and its posteriors are computed here with numpy, so
queries do not need scikit-learn's objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from artylyze.index.errors import IndexBuildError, IndexStoreError

FIT_MAX = 20_000
METRIC_SAMPLE = 3_000
COVARIANCE_TYPES = ("diag", "full")
KMEANS_KS = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)
GMM_KS = (2, 3, 4, 6, 8, 10, 12, 14, 16, 20, 24)
#: Fit rows per clustering dim: a small collection clusters in fewer dims (at least
#: ``MIN_DIMS``), so each diagonal Gaussian has enough works per parameter and BIC settles on
#: more than 2 themes (300 works in 32 dims: k = 2; in 7 dims: 6).
ROWS_PER_DIM = 40
MIN_DIMS = 4


def candidate_ks(n: int, ks: tuple[int, ...]) -> list[int]:
    """The ks of a sweep that leave at least ~5 members per cluster (at least one k)."""
    kept = [k for k in ks if 2 <= k <= max(2, n // 5) and k < n]
    return kept or [max(1, min(2, n - 1))]


def fit_sample(n: int, seed: int, limit: int = FIT_MAX) -> np.ndarray:
    """Row ids to fit on: all rows up to ``limit``, else a seeded random sample."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def kmeans_sweep(x: np.ndarray, ks: list[int], seed: int = 0) -> list[dict[str, float]]:
    """Inertia, silhouette and Davies-Bouldin for each k (the elbow plot's data)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    out = []
    for k in ks:
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
        row: dict[str, float] = {"k": int(k), "inertia": float(km.inertia_)}
        if 1 < len(set(km.labels_.tolist())) < len(x):
            row["silhouette"] = float(silhouette_score(
                x, km.labels_, sample_size=min(METRIC_SAMPLE, len(x)), random_state=seed))
            row["davies_bouldin"] = float(davies_bouldin_score(x, km.labels_))
        out.append(row)
    return out


def best_k(sweep: list[dict[str, float]]) -> int:
    """The k with the highest silhouette (the first k when none could be scored)."""
    scored = [r for r in sweep if "silhouette" in r]
    if not scored:
        return int(sweep[0]["k"])
    return int(max(scored, key=lambda r: r["silhouette"])["k"])


def fit_kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """KMeans centres [k, d] (labels come from ``nearest_centre``)."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(x):
        raise IndexBuildError(f"KMeans k must be in 1..{len(x)}, got {k}")
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x).cluster_centers_.astype(
        np.float32)


def nearest_centre(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x ** 2).sum(1)[:, None] - 2 * x @ centres.T + (centres ** 2).sum(1)[None, :]
    return d.argmin(axis=1).astype(np.int32)


@dataclass(frozen=True)
class Gmm:
    """A Gaussian mixture as arrays: what sklearn fits, what npz stores, what numpy scores."""

    weights: np.ndarray  # [k]
    means: np.ndarray  # [k, d]
    covariances: np.ndarray  # [k, d] (diag) or [k, d, d] (full)
    precisions_cholesky: np.ndarray  # same shape as covariances
    covariance_type: str
    temperature: float = 1.0  # posteriors = softmax(log_joint / T); see index/membership.py

    @property
    def k(self) -> int:
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """log(weight_j) + log N(x | mean_j, cov_j) for every row and component: [n, k]."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise IndexStoreError(f"mixture expects {self.dim}-dim points, got {list(x.shape)}")
        prec = self.precisions_cholesky.astype(np.float64)
        means = self.means.astype(np.float64)
        if self.covariance_type == "diag":
            log_det = np.log(prec).sum(axis=1)
            # sum_d ((x_d - m_d) p_d)^2 expanded into matrix products, so memory is
            # rows x k, not rows x k x dims (600 MB for 50k rows).
            p2 = prec ** 2
            maha = ((x ** 2) @ p2.T - 2 * x @ (means * p2).T
                    + ((means ** 2) * p2).sum(axis=1)[None])
        else:
            log_det = np.log(np.diagonal(prec, axis1=1, axis2=2)).sum(axis=1)
            maha = np.empty((len(x), self.k))
            for j in range(self.k):
                y = (x - means[j]) @ prec[j]
                maha[:, j] = (y ** 2).sum(axis=1)
        log_gauss = -0.5 * (self.dim * np.log(2 * np.pi) + maha) + log_det
        return log_gauss + np.log(self.weights.astype(np.float64))[None]

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        """Membership probabilities [n, k] at the mixture's temperature; rows sum to 1."""
        lj = self.log_joint(x) / self.temperature
        lj -= lj.max(axis=1, keepdims=True)
        p = np.exp(lj)
        return p / p.sum(axis=1, keepdims=True)

    def to_arrays(self, prefix: str = "gmm_") -> dict[str, np.ndarray]:
        return {f"{prefix}weights": self.weights, f"{prefix}means": self.means,
                f"{prefix}covariances": self.covariances,
                f"{prefix}precisions_cholesky": self.precisions_cholesky,
                f"{prefix}covariance_type": np.array(self.covariance_type),
                f"{prefix}temperature": np.array(self.temperature, np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "gmm_") -> Gmm:
        try:
            gmm = cls(*(np.asarray(arrays[prefix + n], np.float32) for n in (
                "weights", "means", "covariances", "precisions_cholesky")),
                covariance_type=str(arrays[prefix + "covariance_type"]),
                temperature=float(np.asarray(arrays.get(prefix + "temperature", 1.0))))
        except KeyError as e:
            raise IndexStoreError(f"mixture parameters are missing array {e}") from e
        except (TypeError, ValueError) as e:
            raise IndexStoreError(f"mixture temperature is not a number ({e})") from e
        if not (np.isfinite(gmm.temperature) and gmm.temperature > 0):
            raise IndexStoreError(f"mixture temperature must be positive, got {gmm.temperature}")
        k, d = gmm.means.shape if gmm.means.ndim == 2 else (-1, -1)
        shape = (k, d) if gmm.covariance_type == "diag" else (k, d, d)
        if (gmm.covariance_type not in COVARIANCE_TYPES or gmm.weights.shape != (k,)
                or gmm.precisions_cholesky.shape != shape or gmm.covariances.shape != shape):
            raise IndexStoreError("mixture parameters have inconsistent shapes or type "
                                  f"{gmm.covariance_type!r}")
        return gmm


def cluster_dims(n: int, wanted: int) -> int:
    """The clustering dims for ``n`` fit rows: ``wanted``, but at most ``n // ROWS_PER_DIM``
    (not under ``MIN_DIMS``) and never ``n`` or more."""
    return max(1, min(wanted, max(MIN_DIMS, n // ROWS_PER_DIM), n - 1))


def _from_sklearn(model) -> Gmm:
    return Gmm(model.weights_.astype(np.float32), model.means_.astype(np.float32),
               model.covariances_.astype(np.float32),
               model.precisions_cholesky_.astype(np.float32), model.covariance_type)


def fit_gmm(x: np.ndarray, k: int | None = None, ks: list[int] | None = None,
            covariance_type: str = "diag", seed: int = 0) -> tuple[Gmm, list[dict[str, float]]]:
    """Fit a mixture with ``k`` components, or pick k by lowest BIC over ``ks``.

    Diagonal covariances by default: k*d parameters per shape instead of k*d^2/2, stable
    for small clusters, and BIC then settles on a readable number of themes (given enough
    rows per dim: see :func:`cluster_dims`).
    """
    from sklearn.mixture import GaussianMixture

    if covariance_type not in COVARIANCE_TYPES:
        raise IndexBuildError(f"covariance type must be one of {COVARIANCE_TYPES}, "
                              f"got {covariance_type!r}")
    if k is not None and not 1 <= k <= len(x):
        raise IndexBuildError(f"mixture k must be in 1..{len(x)}, got {k}")
    trial = [k] if k is not None else (ks or candidate_ks(len(x), GMM_KS))
    fitted, bics = [], []
    for kk in trial:
        model = GaussianMixture(n_components=kk, covariance_type=covariance_type,
                                reg_covar=1e-4, n_init=1, max_iter=200, random_state=seed)
        model.fit(x)
        bics.append({"k": int(kk), "bic": float(model.bic(x))})
        fitted.append(model)
    best = min(range(len(fitted)), key=lambda i: bics[i]["bic"])
    return _from_sklearn(fitted[best]), bics
