"""``explain``: which parts of a painting drive a prediction.

An :class:`Explainer` holds a model (an ONNX bundle, or a torch checkpoint when Grad-CAM is
wanted) and explains one image at a time: it predicts every task, picks the label to explain
per task (the top one, or the one asked for) and computes a saliency map for each, all from
one set of masked forward passes (:mod:`artylyze.explain.saliency`). With a checkpoint, Grad-CAM
(:mod:`artylyze.train.gradcam`) adds a second map per label. Without one, nothing here
imports torch.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artylyze.errors import ArtyLyzeError
from artylyze.explain.saliency import Predictor, SaliencyOptions, perturb

TOP_PREDICTIONS = 5
ALL_TASKS = "all"
GRADCAM = "gradcam"


class ExplainError(ArtyLyzeError):
    """An unknown task or label, or a checkpoint where a bundle was expected."""


@dataclass(frozen=True)
class Target:
    """One label of one task to explain, with the model's probability for it."""

    task: str
    label: str
    index: int
    score: float


@dataclass
class Explained:
    """What ``explain`` found for one image: predictions, targets and one map per method."""

    name: str
    pixels: np.ndarray  # the model's input, uint8 [S, S, 3]
    width: int  # the original image's size
    height: int
    predicted: dict[str, list[dict[str, Any]]]
    targets: list[Target]
    maps: dict[str, list[np.ndarray]]  # method -> one [S, S] map per target
    passes: int
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Explainer:
    """A model and how to explain it; ``gradcam`` is set only for checkpoints."""

    predict: Predictor
    labels: dict[str, tuple[str, ...]]
    input_size: int
    resize: str
    model_name: str
    options: SaliencyOptions = SaliencyOptions()
    gradcam: Callable[[np.ndarray, list[tuple[str, int]]], list[np.ndarray]] | None = None
    close: Callable[[], None] = lambda: None

    @property
    def methods(self) -> list[str]:
        return [self.options.method] + ([GRADCAM] if self.gradcam else [])

    def tasks(self, asked: list[str] | None) -> list[str]:
        """The tasks to explain: as asked (``all`` for every one), else ``style`` (or the
        model's first task when it has no style head)."""
        if not asked:
            return ["style"] if "style" in self.labels else [next(iter(self.labels))]
        if ALL_TASKS in asked:
            return list(self.labels)
        for task in asked:
            if task not in self.labels:
                raise ExplainError(f"the model has no task {task!r}; it has "
                                   f"{', '.join(self.labels)} (or {ALL_TASKS})")
        return list(dict.fromkeys(asked))

    def explain(self, name: str | Path, tasks: list[str], label: str | None = None) -> Explained:
        """Predict, pick one target per task, and map each; ``label`` needs a single task."""
        from artylyze.imaging import load_image

        if label is not None and len(tasks) != 1:
            raise ExplainError(f"--label {label!r} names a label of one task; asked for "
                               f"{len(tasks)} tasks ({', '.join(tasks)})")
        start = time.perf_counter()
        decoded = load_image(name, self.input_size, self.resize)
        perturbed = perturb(self.predict, decoded.pixels, self.options)
        probs = perturbed.reference
        targets = [self._target(t, probs[t], label) for t in tasks]
        pairs = [(t.task, t.index) for t in targets]
        found = {self.options.method: [perturbed.map(*p) for p in pairs]}
        if self.gradcam is not None:
            found[GRADCAM] = self.gradcam(decoded.pixels, pairs)
        return Explained(str(name), decoded.pixels, decoded.width, decoded.height,
                         {t: top_labels(probs[t], self.labels[t]) for t in self.labels},
                         targets, found, self.options.passes,
                         time.perf_counter() - start)

    def _target(self, task: str, probs: np.ndarray, label: str | None) -> Target:
        names = self.labels[task]
        if label is None:
            i = int(np.argmax(probs))
        elif label in names:
            i = names.index(label)
        else:
            close = difflib.get_close_matches(label, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ExplainError(f"task {task!r} has no label {label!r}{hint} "
                               f"({len(names)} labels: {', '.join(names[:12])}"
                               f"{', ...' if len(names) > 12 else ''})")
        return Target(task, names[i], i, float(probs[i]))


def top_labels(probs: np.ndarray, names: tuple[str, ...],
               k: int = TOP_PREDICTIONS) -> list[dict[str, Any]]:
    """The ``k`` most probable labels, best first, as {label, score}."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": names[i], "score": round(float(probs[i]), 4)} for i in order]


def open_explainer(model: str | Path | None = None, checkpoint: str | Path | None = None,
                   options: SaliencyOptions = SaliencyOptions(), device: str = "cpu",
                   threads: int | None = None) -> Explainer:
    """An explainer for a bundle (default: the shipped one), or for a checkpoint, which
    adds Grad-CAM and needs the train extra (torch)."""
    options.check()
    if checkpoint is not None:
        if model is not None:
            raise ExplainError("give --model (an ONNX bundle) or --checkpoint, not both")
        return _checkpoint_explainer(Path(checkpoint), options)
    from artylyze.model.bundle import load_bundle

    bundle = load_bundle(model, device=device, threads=threads)
    m = bundle.manifest
    return Explainer(bundle.run, {t.name: t.labels for t in m.tasks}, m.input_size, m.resize,
                     m.model_id, options, close=bundle.close)


def _checkpoint_explainer(path: Path, options: SaliencyOptions) -> Explainer:
    """Scores as ``evaluate`` gives them (calibrated when the checkpoint has it); Grad-CAM
    on the network itself (temperatures scale a map, they do not move it)."""
    try:
        from artylyze.explain.evaluation import open_model
        from artylyze.train.checkpoint import load_checkpoint
        from artylyze.train.gradcam import gradcam
    except ImportError as e:
        raise ExplainError(f"--checkpoint needs the train extra (torch): pip install "
                           f"'artylyze[train]' ({e})") from e
    run, man, _ = open_model(path)
    net, _ = load_checkpoint(path)
    return Explainer(run, {t.name: t.labels for t in man.tasks}, man.input_size, man.resize,
                     man.name, options, gradcam=lambda px, targets: gradcam(net, px, targets))
