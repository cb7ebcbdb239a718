"""Teach a collection's own categories from a few human labels, on the embeddings it holds.

:mod:`~artylyze.teach.fit` chooses and calibrates a classifier by cross-validation,
:mod:`~artylyze.teach.model` keeps it (JSON + npz, no pickle) and applies it,
:mod:`~artylyze.teach.columns` reads embeddings and writes a task's four columns,
:mod:`~artylyze.teach.labels` finds the labels (a CSV, the review store),
:mod:`~artylyze.teach.run` runs ``teach`` and re-applies kept tasks after ``tag``, and
:mod:`~artylyze.teach.queue` orders the review queue.

May import: :mod:`artylyze.review`, :mod:`artylyze.store`, :mod:`artylyze.model` and the
foundations; ``tagging`` (above) calls :func:`~artylyze.teach.run.apply_kept`.
"""
