"""Similar artworks and influences: FAISS index, PCA, clusters and their themes.

Modules, one job each: ``entries`` (meta.parquet -> vectors + metadata), ``labels``
(ground truth from a CSV, periods), ``reduce`` (PCA), ``faiss_index`` (type by size, build,
recall tuning, search, load/save), ``clusters`` (KMeans sweep, GMM as arrays), ``themes``
(what dominates a cluster), ``store`` (the index directory), ``build`` (the ``index build``
pipeline), ``search`` (queries), ``influence``, ``html`` / ``plots`` / ``report`` /
``thumbs`` (pages and charts), ``gallery`` (the shipped reference gallery), ``quality``
(precision@k), ``stream`` (builds from Parquet datasets larger than memory, in chunks),
``merge`` (joins indexes built on shards). Nothing here imports torch.
"""
