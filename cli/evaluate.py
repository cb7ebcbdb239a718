"""``artylyze evaluate``: metrics and plots for a checkpoint or a bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from artylyze.cli.errors import cli_errors
from artylyze.options import Evaluate as O


def evaluate(
    model: Path = typer.Argument(..., exists=True, file_okay=False,
                                 help="Checkpoint directory or ONNX bundle."),
    manifest: Path = typer.Option(..., "--manifest", "-m", exists=True, dir_okay=False,
                                  help="Manifest Parquet from `artylyze dataset build`."),
    split: str = typer.Option(O.split.default, help=O.split.help),
    out: Path = typer.Option(O.out.default, "--out", "-o", help=O.out.help),
    limit: int | None = typer.Option(None, help="At most this many images."),
    plots: bool = typer.Option(O.plots.default, help=O.plots.help),
    saliency: int = typer.Option(O.saliency.default, min=0, help=O.saliency.help),
) -> None:
    """Accuracy, macro/weighted P/R/F1, top-3 accuracy and confusion matrices per task."""
    from artylyze.explain.evaluation import evaluate as run
    from artylyze.explain.evaluation import summary_table

    with cli_errors():
        result = run(model, manifest, split, out, limit=limit, plots=plots, saliency=saliency)
    typer.echo(f"{'task':<12} {'n':>5} {'acc':>6} {'macroF1':>8} {'top3':>6} {'ECE':>6} "
               f"{'floor':>6}")
    for task, n, acc, f1, top3, ece, floor in summary_table(result):
        typer.echo(f"{task:<12} {n:>5} {acc:6.3f} {f1:8.3f} {top3:6.3f} {ece:6.3f} "
                   f"{floor:6.3f}")
    typer.echo("ECE floor: what a perfectly calibrated model with these scores would show "
               "on this many works")
    date = result.get("date", {})
    if date.get("n"):
        typer.echo(f"date: n {date['n']}, MAE {date['mae_years']:.1f} years, within 25 "
                   f"{date['within_25']:.1%}, within 50 {date['within_50']:.1%}, interval "
                   f"covers {date['interval_coverage']:.1%} (mean width "
                   f"{date['interval_mean_width']:.0f} years)")
    for source, s in result.get("style_by_source", {}).items():
        typer.echo(f"style on {source}: {s['accuracy']:.3f} ({s['n']} images)")
    typer.echo(f"wrote {out / 'metrics.json'}")
    if plots and saliency:
        typer.echo(f"wrote {out}/looks_at_<task>.png (what the model looks at)")
