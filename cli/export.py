"""``artylyze export``: checkpoint -> model bundle, then print what the checks measured.

Everything heavy (torch, onnx, onnxruntime) is imported inside the command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from artylyze.cli.errors import cli_errors
from artylyze.cli.params import option
from artylyze.options import MIN_OPSET
from artylyze.options import Export as O

STAGES = {
    "export": "exporting the ONNX graph",
    "parity": "parity check against torch",
    "calibrate": "int8 calibration",
    "evaluate": "fp32 vs int8 on labelled images",
    "benchmark": "timing fp32 vs int8",
}


def export(
    checkpoint: Annotated[Path, typer.Argument(
        exists=True, file_okay=False, help="Checkpoint folder written by 'artylyze train'.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Bundle folder to write (an existing bundle is replaced).")],
    quantize: Annotated[str | None, typer.Option(
        "--quantize", help="'int8': static int8 quantization, refused if style accuracy "
        "drops by more than --max-style-drop points.")] = None,
    opset: Annotated[int, option(O.opset, "--opset", min=MIN_OPSET)] = O.opset.default,
    check_images: Annotated[Path | None, typer.Option(
        "--check-images", exists=True, help="Folder, CSV or manifest of images for the "
        "parity check (default: test images of the default source).")] = None,
    check_count: Annotated[int, option(O.check_count, "--check-count", min=1)
                           ] = O.check_count.default,
    data: Annotated[Path | None, typer.Option(
        "--data", exists=True, help="Default source of images: a wikiart11-like folder "
        "(labels.csv + images/), CSV or training manifest (default: the manifest the "
        "checkpoint was trained on, else ../shared/datasets/wikiart11).")] = None,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", exists=True, help="Folder, CSV or manifest of int8 calibration "
        "images (default: train split of the default source).")] = None,
    calibration_count: Annotated[int, option(O.calibration_count, "--calibration-count", min=1)
                                 ] = O.calibration_count.default,
    eval_labels: Annotated[Path | None, typer.Option(
        "--eval-labels", exists=True, dir_okay=False, help="Labelled CSV or manifest to "
        "compare int8 with fp32 on (default: test split of the default source).")] = None,
    eval_count: Annotated[int | None, typer.Option(
        "--eval-count", min=1, help="Evaluate on this many images (default: all).")] = None,
    max_style_drop: Annotated[float, option(O.max_style_drop, "--max-style-drop")
                              ] = O.max_style_drop.default,
    threads: Annotated[int | None, option(O.threads, "--threads", min=1)] = O.threads.default,
    metrics: Annotated[Path | None, typer.Option(
        "--metrics", exists=True, dir_okay=False,
        help="metrics.json from `artylyze evaluate CHECKPOINT` on the test split, recorded "
             "in the manifest as the model's test metrics.")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress; print only the result.")] = False,
) -> None:
    """Export CHECKPOINT as a model bundle (model.onnx + manifest.json) for tagging.

    The graph takes uint8 RGB images and returns a unit-norm embedding and one probability
    vector per task. Export fails (exit 2) unless the ONNX model matches torch on real
    images; with --quantize int8 it also reports accuracy change and speed-up.
    """
    from artylyze.export import export_bundle

    reporter = StageReporter(sys.stderr, quiet=quiet)
    with cli_errors():
        try:
            manifest = export_bundle(
                checkpoint, out, opset=opset, quantize=quantize, check_images=check_images,
                check_count=check_count, data=data, calibration=calibration,
                calibration_count=calibration_count, eval_labels=eval_labels,
                eval_count=eval_count, max_style_drop=max_style_drop, threads=threads,
                progress=reporter, test_metrics=metrics,
            )
        finally:
            reporter.close()
    typer.echo(format_report(out, manifest.to_dict()))


class StageReporter:
    """Progress of the export stages: a rich bar on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO, quiet: bool = False, interval: float = 30.0) -> None:
        self.stream, self.quiet, self.interval = stream, quiet, interval
        self.bar = None
        self.tasks: dict[str, Any] = {}
        self.last = 0.0
        if not quiet and stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(file=stream))
            self.bar.start()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        label = STAGES.get(stage, stage)
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(label, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)
            return
        now = time.monotonic()
        if done in (0, total) or now - self.last >= self.interval:
            self.last = now
            print(f"export: {label}: {done}/{total}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def format_report(out: Path, m: dict[str, Any]) -> str:
    """What was written and what the checks measured, from the manifest."""
    quant = m.get("quantization") or {}
    lines = [f"wrote {out} ({m['model_id']}): {m['backbone']}, {m['input']['size']}px "
             f"{m['input']['resize']}, opset {m.get('opset')}, {quant.get('dtype', 'float32')}"]
    p = m["parity"]
    lines.append(f"parity vs torch on {p['images']} images: "
                 f"{'passed' if p['passed'] else 'FAILED'} (max |diff| {p['max_abs_diff']:.1e}, "
                 f"embedding {p['embedding_max_abs_diff']:.1e})")
    for name, t in p["tasks"].items():
        lines.append(f"  {name:<12} max |diff| {t['max_abs_diff']:.1e}  "
                     f"top-1 agreement {100 * t['top1_agreement']:.1f}%")
    if quant.get("dtype") == "int8":
        lines += _int8_lines(quant)
    return "\n".join(lines)


def _int8_lines(q: dict[str, Any]) -> list[str]:
    lines = [f"int8: {q['method']} {q['format']}, weights {q['weights']}, "
             f"activations {q['activations']}"
             + (f", {q['calibration_images']} calibration images"
                if "calibration_images" in q else "")]
    if "static_failed" in q:
        lines.append(f"  warning: static quantization did not fit ({q['static_failed']}); "
                     "used dynamic")
    lines.append(f"  accuracy on {q['evaluation']['images']} images of "
                 f"{q['evaluation']['source']}:")
    for name, a in q["accuracy"].items():
        if a.get("labelled"):
            lines.append(f"  {name:<12} fp32 {100 * a['fp32_accuracy']:.2f}%  int8 "
                         f"{100 * a['int8_accuracy']:.2f}%  ({a['change_points']:+.2f} points, "
                         f"{a['labelled']} labelled)  agreement {100 * a['agreement']:.1f}%")
        else:
            lines.append(f"  {name:<12} no labels; top-1 agreement with fp32 "
                         f"{100 * a['agreement']:.1f}%")
    s = q["speed"]
    lines.append(f"  speed: fp32 {s['fp32_ms_per_image']:.2f} ms/image, int8 "
                 f"{s['int8_ms_per_image']:.2f} ms/image ({s['speedup']:.2f}x), batch "
                 f"{s['batch']}, {s['threads']} threads, {s['cpu']}")
    if s["speedup"] < 1:
        lines.append("  warning: int8 is slower than fp32 on this CPU; prefer the fp32 bundle")
    return lines
