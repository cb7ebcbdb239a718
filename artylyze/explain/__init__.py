"""Explanations and evaluation: why the model says what it says, and how often it is right.

:mod:`~artylyze.explain.saliency` masks an image and measures what each region does to a
score; :mod:`~artylyze.explain.core` runs it (or Grad-CAM for a checkpoint) over images;
:mod:`~artylyze.explain.overlay` and :mod:`~artylyze.explain.page` draw maps and the HTML page;
:mod:`~artylyze.explain.looks_at` makes the sheet of what the model looks at per class;
:mod:`~artylyze.explain.evaluation` scores a bundle or checkpoint on a manifest.

May import: the foundations, :mod:`artylyze.model`, and the plotting and HTML helpers of
:mod:`artylyze.index`; torch only inside functions that take a checkpoint.
"""
