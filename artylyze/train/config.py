"""A training run's settings: plain data, stored in every checkpoint so runs are reproducible;
the defaults are the command line's (:class:`artylyze.options.Train`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from artylyze.options import TASKS, Train

MODES = ("finetune", "frozen")


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in every checkpoint so runs are reproducible."""

    manifest: str
    out: str
    backbone: str = Train.backbone.default
    mode: str = Train.mode.default  # one of MODES
    epochs: int = Train.epochs.default
    batch_size: int = Train.batch_size.default
    lr: float = Train.lr.default  # heads and embedding
    backbone_lr: float = Train.backbone_lr.default
    ema_decay: float = Train.ema_decay.default  # 0 turns the weight average off
    weight_decay: float = 0.02
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balance: str = Train.balance.default
    input_size: int = Train.input_size.default
    train_size: int = Train.train_size.default
    resize: str = "stretch"
    embedding_dim: int = Train.embedding_dim.default
    freeze_stem: bool = True
    bf16: bool = Train.bf16.default
    patience: int = Train.patience.default
    seed: int = Train.seed.default
    limit: int | None = None  # use at most this many rows per split (tests, smoke runs)
    pretrained: bool = True
    weights: str | None = None
    init: str | None = None  # start from this checkpoint (e.g. re-fit heads of a fine-tuned model)
    name: str | None = None
    degrade: bool = Train.degrade.default  # JPEG re-compression, blur, jitter (data.Degrade)
    freeze_bn: bool = Train.freeze_bn.default  # for weights recovered from a bundle
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
