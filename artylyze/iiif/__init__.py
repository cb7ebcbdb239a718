"""IIIF in: read Presentation 3 / 2.1 manifests and collections and fetch their images from
Image API 2/3 services (:mod:`~artylyze.iiif.documents`, :mod:`~artylyze.iiif.image_api`,
:mod:`~artylyze.iiif.fetch`), for the tagging step to decode in place of files.

Writing the results back as Web Annotations is :mod:`artylyze.metadata.iiif_annotations`.
Needs the ``iiif`` extra (httpx, ijson); nothing here is imported unless a run reads IIIF.

May import: the foundations (and :mod:`artylyze.store`, :mod:`artylyze.model`, unused so far).
"""
