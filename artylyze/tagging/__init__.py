"""Tagging: a collection folder in, meta.parquet out (walk -> decode -> infer -> record -> output).

:mod:`~artylyze.tagging.walk` lists the files, :mod:`~artylyze.tagging.decode` reads and
decodes one, :mod:`~artylyze.tagging.record` turns results into rows and state,
:mod:`~artylyze.tagging.summary` is what a run reports, and :mod:`~artylyze.tagging.core` runs
the steps in order around the output (:class:`artylyze.store.Store`). Where decoding and
inference run is a *distributor*'s job: :mod:`~artylyze.tagging.engine` (a local pool, and
``tag_collection``, the entry point) and :mod:`~artylyze.tagging.ray_engine` (a Ray cluster).

May import: the foundations, :mod:`artylyze.model`, :mod:`artylyze.store`.
"""
