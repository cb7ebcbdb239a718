"""What an index build *learns*, all from the source's sample: the optional PCA, the FAISS
training (IVF centroids, PQ codebooks), the clustering-space PCA, the KMeans sweep, the GMM
and the themes' label shares. A few hundred thousand random rows estimate means,
covariances and centroids as well as all rows would.

:class:`Trained` is what shards must share to be merged; a trained index directory (a
``train_only`` build, or any build) gives it back with :func:`load_trained`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from artylyze.index import clusters as cl
from artylyze.index.entries import Entries
from artylyze.index.errors import IndexBuildError
from artylyze.index.faiss_index import choose_factory, ivf_of, trained_index
from artylyze.index.membership import agreement, fit_temperature
from artylyze.index.reduce import PCA, fit_pca
from artylyze.index.store import ClusterModel, load_index_dir
from artylyze.index.themes import centroid_affinity, make_themes

if TYPE_CHECKING:
    from artylyze.index.build import BuildOptions

POSTERIOR_CHUNK = 50_000
MEMBERSHIP_FIELD = "style"  # the memberships are calibrated on this theme field


@dataclass
class Trained:
    """Everything fitted on the sample: what shards must share to be merged."""

    index: faiss.Index  # trained, empty
    factory: str
    params: dict[str, int]
    pca: PCA | None
    clusters: ClusterModel  # coords: of the sample rows only
    themes: dict[str, Any]  # sizes and label shares of the sample

    def to_index(self, raw: np.ndarray) -> np.ndarray:
        """Bundle embeddings in the index's space (through the PCA, if any)."""
        return self.pca.transform(raw) if self.pca is not None else raw

    def fingerprint(self) -> str:
        """sha256 of the trained, empty index and the fitted parameters; search settings
        (nprobe) are left out, they may differ between shards."""
        empty = faiss.clone_index(self.index)
        empty.reset()
        ivf = ivf_of(empty)
        if ivf is not None:
            ivf.nprobe = 1
        h = hashlib.sha256(faiss.serialize_index(empty).tobytes())
        arrays = {**(self.pca.to_arrays("pca_") if self.pca else {}),
                  **self.clusters.to_arrays()}
        for name in sorted(arrays):
            if name != "coords":
                h.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
        return h.hexdigest()


def fit_clusters(entries: Entries, opts: BuildOptions, index_vectors: np.ndarray,
                 log: Callable[[str], None]) -> tuple[ClusterModel, dict[str, Any]]:
    """Clustering space, KMeans sweep, GMM by BIC, themes of ``entries`` (the sample).
    Returns the model and the themes document."""
    n, dim = entries.vectors.shape
    fit_ids = cl.fit_sample(n, opts.seed)
    dims = cl.cluster_dims(len(fit_ids), min(opts.cluster_dims, dim))
    if dims < min(opts.cluster_dims, dim, n - 1):
        log(f"{len(fit_ids)} works: clustering in {dims} dims, not {opts.cluster_dims} "
            f"(at most one dim per {cl.ROWS_PER_DIM} works)")
    space = fit_pca(entries.vectors[fit_ids], n_components=dims)
    coords = space.project(entries.vectors).astype(np.float32)
    x = coords[fit_ids]
    ks = cl.candidate_ks(len(x), cl.KMEANS_KS)
    if opts.kmeans_k is not None and opts.kmeans_k not in ks:
        ks = sorted({*ks, opts.kmeans_k})
    log(f"KMeans sweep over k = {ks} on {len(x)} points in {dims} PCA dims")
    sweep = cl.kmeans_sweep(x, ks, seed=opts.seed)
    kmeans_k = opts.kmeans_k or cl.best_k(sweep)
    centres = cl.fit_kmeans(x, kmeans_k, seed=opts.seed)
    log("Gaussian mixture " + (f"k={opts.gmm_k}" if opts.gmm_k else "k by BIC"))
    gmm, bics = cl.fit_gmm(x, k=opts.gmm_k, covariance_type=opts.covariance, seed=opts.seed)
    assign = np.concatenate([gmm.posteriors(coords[s:s + POSTERIOR_CHUNK]).argmax(1)
                             for s in range(0, n, POSTERIOR_CHUNK)]).astype(np.int32)
    labels, sources = entries.theme_labels()
    affinity = centroid_affinity(index_vectors, assign, gmm.k)
    themes = make_themes(assign, gmm.k, labels, sources, affinity, gmm.weights)
    gmm, fitted_on = calibrate(gmm, coords, themes, labels)
    if fitted_on:
        log(f"membership temperature {gmm.temperature:.3g} (fitted on {fitted_on} works' "
            f"{MEMBERSHIP_FIELD})")
    model = ClusterModel(space, gmm, centres, coords.astype(np.float16))
    doc = {"themes": themes, "affinity": np.round(affinity, 4).tolist(),
           "affinity_measure": "cosine similarity of the clusters' mean index vectors",
           "label_sources": sources,
           "kmeans": {"k": int(kmeans_k), "chosen_by": "given" if opts.kmeans_k else
                      "highest silhouette", "sweep": sweep},
           "gmm": {"k": gmm.k, "chosen_by": "given" if opts.gmm_k else "lowest BIC",
                   "covariance": gmm.covariance_type, "dims": dims, "sweep": bics,
                   "fit_rows": int(len(x)), "temperature": round(gmm.temperature, 4),
                   "temperature_rows": fitted_on}}
    return model, doc


def calibrate(gmm: cl.Gmm, coords: np.ndarray, themes: list[dict[str, Any]],
              labels: dict[str, list[str | None]]) -> tuple[cl.Gmm, int]:
    """The mixture with its membership temperature fitted on the works' style (ground truth
    where the build has it, else predicted) against each cluster's dominant style; as it is
    (T = 1) without styles. Returns it and the number of works it was fitted on."""
    values = labels.get(MEMBERSHIP_FIELD)
    if not values or gmm.k < 2:
        return gmm, 0
    dominant = [((t["labels"].get(MEMBERSHIP_FIELD) or {}).get("top") or [{}])[0].get("label")
                for t in themes]
    known = np.array([v is not None for v in values])
    if known.sum() < 2:
        return gmm, 0
    rows = coords[known].astype(np.float32)
    log_joint = np.concatenate([gmm.log_joint(rows[s:s + POSTERIOR_CHUNK])
                                for s in range(0, len(rows), POSTERIOR_CHUNK)])
    agree = agreement(dominant, np.array([v for v in values if v is not None], object))
    return replace(gmm, temperature=fit_temperature(log_joint, agree)), int(known.sum())


def fit_on_sample(sample: Entries, opts: BuildOptions, n: int, rng: np.random.Generator,
                  log: Callable[[str], None]) -> Trained:
    """PCA, FAISS training and clusters, all from the sample of ``n`` rows."""
    for name, k in (("--k", opts.kmeans_k), ("--gmm-k", opts.gmm_k)):
        if k is not None and not 1 <= k <= sample.count:
            raise IndexBuildError(f"{name} {k}: must be between 1 and the {sample.count} "
                                  + ("entries" if sample.count == n else "sampled entries"))
    pca, vectors = None, sample.vectors
    if opts.pca is not None or opts.pca_variance is not None:
        pca = fit_pca(sample.vectors, n_components=opts.pca, variance=opts.pca_variance)
        vectors = pca.transform(sample.vectors)
        log(f"PCA {sample.dim} -> {pca.out_dim} dims keeps "
            f"{float(pca.explained_variance_ratio.sum()):.1%} of the variance"
            + ("" if sample.count == n else f" (fitted on {sample.count} sampled rows)"))
    factory = (opts.index_type or choose_factory(n, vectors.shape[1])).strip()
    index = trained_index(factory, vectors, rng, opts.seed, log)
    model, themes = fit_clusters(sample, opts, vectors, log)
    if sample.count < n:
        themes["labels_from_sample_rows"] = sample.count
    return Trained(index, factory, {}, pca, model, themes)


def load_trained(path: str | Path, model_id: str, dim: int) -> Trained:
    """The trained parts of an index directory (made with ``train_only`` or a full build)."""
    done = load_index_dir(path)
    man = done.manifest
    if man.model_id != model_id or man.dim != dim:
        raise IndexBuildError(f"{path}: trained for model {man.model_id!r} ({man.dim} "
                              f"dims), the collection is {model_id!r} ({dim} dims)")
    index = faiss.clone_index(done.index)
    index.reset()
    return Trained(index, man.index_type, dict(man.search_params), done.pca, done.clusters,
                   done.themes)
