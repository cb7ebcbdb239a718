"""Metadata readers and writers around meta.parquet: what other tools read.

:mod:`~artylyze.metadata.metafile` opens a meta.parquet (file or folder of parts) with its
bundle manifest; :mod:`~artylyze.metadata.flat` writes CSV and JSON lines;
:mod:`~artylyze.metadata.xmp`, :mod:`~artylyze.metadata.sidecar_plan`,
:mod:`~artylyze.metadata.sidecar_merge` and :mod:`~artylyze.metadata.sidecar` write XMP
sidecars; :mod:`~artylyze.metadata.records` and :mod:`~artylyze.metadata.records_attach` join
a museum's record ids.

May import: the foundations, :mod:`artylyze.model` and :mod:`artylyze.store`.
"""
