"""Similar artworks and influences: FAISS index, PCA, clusters and their themes.

Modules, one job each: ``entries`` (meta.parquet -> vectors + metadata), ``labels``
(ground truth from a CSV, periods), ``sources`` (a collection in memory or read from Parquet
in chunks, behind one interface), ``reduce`` (PCA), ``faiss_index`` (type by size, build,
recall tuning, search, load/save), ``recall`` (exact neighbours, recall measures),
``clusters`` (KMeans sweep, GMM as arrays), ``themes`` (what dominates a cluster), ``fit``
(what a build learns from its sample), ``build`` (the one ``index build`` pipeline, over
any source), ``manifest`` (the typed ``manifest.json``), ``store`` (the index directory),
``search`` (queries), ``influence``, ``html`` / ``plots`` / ``report`` / ``thumbs`` (pages
and charts), ``gallery`` (the shipped reference gallery), ``quality`` (precision@k),
``merge`` (joins indexes built on shards). Nothing here imports torch.
"""
