"""A training run's settings: plain data, stored in every checkpoint so runs are reproducible."""

from __future__ import annotations

from dataclasses import dataclass, field

from artylyze.train.data import DEFAULT_TASKS

MODES = ("finetune", "frozen")


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in every checkpoint so runs are reproducible."""

    manifest: str
    out: str
    backbone: str = "efficientnet_lite0"
    mode: str = "finetune"  # or "frozen"
    epochs: int = 14
    batch_size: int = 48
    lr: float = 1e-3  # heads and embedding
    backbone_lr: float = 3e-4
    ema_decay: float = 0.997  # 0 turns the weight average off
    weight_decay: float = 0.02
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balance: str = "weighted-loss"
    input_size: int = 224
    train_size: int = 192
    resize: str = "stretch"
    embedding_dim: int = 256
    freeze_stem: bool = True
    bf16: bool = True
    patience: int = 4
    seed: int = 0
    limit: int | None = None  # use at most this many rows per split (tests, smoke runs)
    pretrained: bool = True
    weights: str | None = None
    init: str | None = None  # start from this checkpoint (e.g. re-fit heads of a fine-tuned model)
    name: str | None = None
    degrade: bool = True  # JPEG re-compression, blur, colour jitter (see data.Degrade)
    freeze_bn: bool = False  # keep batch-norm statistics fixed (weights recovered from a bundle)
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
