"""``artylyze train``: fine-tune or train heads on a manifest."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from artylyze.cli.errors import cli_errors
from artylyze.options import Train as T


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
    out: Path = typer.Option(T.out.default, "--out", "-o", help=T.out.help),
    backbone: str = typer.Option(T.backbone.default, help=T.backbone.help),
    mode: Mode = typer.Option(Mode(T.mode.default), help=T.mode.help),
    epochs: int = typer.Option(T.epochs.default, min=1, help=T.epochs.help),
    batch_size: int = typer.Option(T.batch_size.default, min=1, help=T.batch_size.help),
    lr: float = typer.Option(T.lr.default, help=T.lr.help),
    backbone_lr: float = typer.Option(T.backbone_lr.default, help=T.backbone_lr.help),
    balance: Balance = typer.Option(Balance(T.balance.default), help=T.balance.help),
    train_size: int = typer.Option(T.train_size.default, help=T.train_size.help),
    input_size: int = typer.Option(T.input_size.default, help=T.input_size.help),
    embedding_dim: int = typer.Option(T.embedding_dim.default, help=T.embedding_dim.help),
    patience: int = typer.Option(T.patience.default, help=T.patience.help),
    ema_decay: float = typer.Option(T.ema_decay.default, min=0.0, max=0.99999,
                                    help=T.ema_decay.help),
    seed: int = typer.Option(T.seed.default, help=T.seed.help),
    bf16: bool = typer.Option(T.bf16.default, help=T.bf16.help),
    weights: Path | None = typer.Option(None, exists=True, help="Backbone weights file."),
    limit: int | None = typer.Option(None, help="At most this many images per split."),
    init: Path | None = typer.Option(None, exists=True, file_okay=False, help="Start from "
                                     "this checkpoint, e.g. --mode frozen to re-fit the "
                                     "embedding and heads of a fine-tuned model."),
    name: str | None = typer.Option(None, help="Model name recorded in checkpoints and "
                                    "bundles (default: artylyze-BACKBONE)."),
    degrade: bool = typer.Option(T.degrade.default, help=T.degrade.help),
    freeze_bn: bool = typer.Option(T.freeze_bn.default, help=T.freeze_bn.help),
    tasks: str = typer.Option(T.tasks.default, help=T.tasks.help),
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
