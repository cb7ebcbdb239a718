"""``artylyze explain``: parse options, explain each image, write figures, print.

Without ``--checkpoint`` nothing here imports torch: the ONNX bundle is explained by masking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from artylyze.cli.errors import cli_errors
from artylyze.cli.params import option
from artylyze.options import Explain as O


def explain(
    images: Annotated[list[Path], typer.Argument(
        exists=True, dir_okay=False, help="Image files to explain.")],
    task: Annotated[list[str] | None, typer.Option(
        "--task", "-t", help="Task to explain (repeatable, or 'all'; default: style).")] = None,
    label: Annotated[str | None, typer.Option(
        "--label", "-l", help="Explain this label instead of the top prediction "
        "(one --task only).")] = None,
    out: Annotated[Path, option(O.out, "--out", "-o", file_okay=False)] = O.out.default,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    model: Annotated[Path | None, typer.Option(
        "--model", file_okay=False, help="Model bundle (default: the shipped one).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", exists=True, file_okay=False,
        help="Explain a training checkpoint instead, adding Grad-CAM (needs the train "
        "extra).")] = None,
    method: Annotated[str, option(O.method, "--method")] = O.method.default,
    masks: Annotated[int, option(O.masks, "--masks", min=2)] = O.masks.default,
    seed: Annotated[int, option(O.seed, "--seed")] = O.seed.default,
    device: Annotated[str, option(O.device, "--device")] = O.device.default,
    threads: Annotated[int | None, option(O.threads, "--threads", min=1)] = O.threads.default,
) -> None:
    """Show which parts of each painting drive its predictions: a saliency map per image
    and task, drawn over the painting, with the top predictions."""
    from artylyze.explain.core import open_explainer
    from artylyze.explain.page import write_explanations
    from artylyze.explain.saliency import SaliencyOptions

    with cli_errors():
        options = SaliencyOptions(method=method, masks=masks, seed=seed)
        explainer = open_explainer(model, checkpoint, options, device=device, threads=threads)
        tasks = explainer.tasks(task)
        done = [explainer.explain(image, tasks, label) for image in images]
        explainer.close()
        html, summaries = write_explanations(done, out, explainer.model_name, explainer.resize,
                                             explainer.methods)
    if as_json:
        typer.echo(json.dumps(summaries, indent=2, ensure_ascii=False))
    else:
        for s in summaries:
            labels = ", ".join(f"{t['task']}: {t['label']} ({t['score']:.2f})"
                               for t in s["explained"])
            typer.echo(f"{s['image']}: {labels}; {s['passes']} passes, {s['seconds']:.2f} s")
    typer.echo(f"wrote {html}", err=True)
