"""The tagging core both engines share: walk -> decode -> infer -> record -> output.

:mod:`~artylyze.tagging.decode` reads and decodes one file, :mod:`~artylyze.tagging.record`
turns results into rows and state, :mod:`~artylyze.tagging.summary` is what a run reports,
and :mod:`~artylyze.tagging.core` runs the steps in order around the output
(:class:`artylyze.store.Store`). Where decoding and inference run is a *distributor*'s job:
:mod:`artylyze.engine` (a local pool) and :mod:`artylyze.ray_engine` (a Ray cluster).
"""
