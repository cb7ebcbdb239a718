"""``artylyze train``: fine-tune or train heads on a manifest."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from artylyze.cli.errors import cli_errors


class Mode(str, Enum):
    finetune = "finetune"
    frozen = "frozen"


class Balance(str, Enum):
    none = "none"
    weighted_loss = "weighted-loss"
    sampler = "sampler"
    undersample = "undersample"


def train(
    manifest: Path = typer.Argument(..., exists=True, dir_okay=False, help="Manifest Parquet."),
    out: Path = typer.Option(Path("runs/model"), "--out", "-o", help="Run directory."),
    backbone: str = typer.Option("efficientnet_lite0", help="efficientnet_lite0, "
                                 "mobilenet_v3_large, mobilenet_v3_small, mobilenet_v2, cnn3."),
    mode: Mode = typer.Option(Mode.finetune, help="frozen: heads on cached features."),
    epochs: int = typer.Option(14, min=1),
    batch_size: int = typer.Option(48, min=1),
    lr: float = typer.Option(1e-3, help="Learning rate of embedding and heads."),
    backbone_lr: float = typer.Option(3e-4, help="Learning rate of the unfrozen backbone."),
    balance: Balance = typer.Option(Balance.weighted_loss, help="Class-imbalance handling."),
    train_size: int = typer.Option(192, help="Crop size while fine-tuning."),
    input_size: int = typer.Option(224, help="Bundle input size (validation, export)."),
    embedding_dim: int = typer.Option(256),
    patience: int = typer.Option(4, help="Early stopping patience in epochs."),
    ema_decay: float = typer.Option(0.997, min=0.0, max=0.99999,
                                    help="Weight averaging while fine-tuning; 0 turns it off."),
    seed: int = typer.Option(0),
    bf16: bool = typer.Option(True, help="bfloat16 autocast while training on CPU."),
    weights: Path | None = typer.Option(None, exists=True, help="Backbone weights file."),
    limit: int | None = typer.Option(None, help="At most this many images per split."),
    init: Path | None = typer.Option(None, exists=True, file_okay=False, help="Start from "
                                     "this checkpoint, e.g. --mode frozen to re-fit the "
                                     "embedding and heads of a fine-tuned model."),
    name: str | None = typer.Option(None, help="Model name recorded in checkpoints and "
                                    "bundles (default: artylyze-BACKBONE)."),
    degrade: bool = typer.Option(True, help="Random JPEG re-compression, blur and colour "
                                 "jitter while fine-tuning, so the model cannot learn a "
                                 "source's file quality."),
    freeze_bn: bool = typer.Option(False, help="Keep batch-norm statistics fixed, e.g. when "
                                   "--weights come from a bundle (python -m "
                                   "artylyze.train.from_bundle), whose batch norms are folded."),
    tasks: str = typer.Option("style,genre,artist,nationality,year",
                              help="Comma-separated tasks to learn (year: decades, from "
                                   "recorded years; the period is derived from it)."),
) -> None:
    """Train a multi-task model; resumes from OUT/last when it exists."""
    from artylyze.train.config import TrainConfig
    from artylyze.train.loop import train as run

    cfg = TrainConfig(manifest=str(manifest), out=str(out), backbone=backbone, mode=mode.value,
                      epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr=backbone_lr,
                      balance=balance.value, train_size=train_size, input_size=input_size,
                      embedding_dim=embedding_dim, patience=patience, ema_decay=ema_decay,
                      seed=seed, bf16=bf16,
                      weights=str(weights) if weights else None, limit=limit, name=name,
                      init=str(init) if init else None, degrade=degrade, freeze_bn=freeze_bn,
                      tasks=[t.strip() for t in tasks.split(",") if t.strip()])
    with cli_errors():
        best = run(cfg, log=typer.echo)
    typer.echo(f"best checkpoint: {best}")
