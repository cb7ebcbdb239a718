"""The model bundle and what turns its outputs into rows.

:mod:`~artylyze.model.manifest` reads and checks ``manifest.json`` (labels, calibration,
input size), :mod:`~artylyze.model.runtime` opens onnxruntime sessions,
:mod:`~artylyze.model.bundle` runs the graph on decoded pixels, and
:mod:`~artylyze.model.predict` with :mod:`~artylyze.model.dating` turn its probabilities into
labels, confidences, year intervals and novelty. No torch here.

May import: the foundations (``atomic``, ``errors``, ``options``, ``imaging``). Nothing else of
ArtyLyze: every later stage reads the model through this package.
"""
