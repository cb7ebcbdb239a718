"""The training loop: frozen (cached features, heads only) or fine-tuning, resumable.

Fine-tuning trains at ``train_size`` (random resized crops) and validates at the bundle's
``input_size``: testing at a slightly larger size than training matches the apparent object
size that random crops teach (the "FixRes" effect) and costs ~35% less compute per step.
Fine-tuning validates and saves an exponential moving average of the weights (see
:mod:`artylyze.train.ema`). Every epoch writes ``last/`` (with optimizer state and the online
weights, for resuming) and, when the mean validation macro-F1 improves, ``best/``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from artylyze.atomic import recover_dir
from artylyze.train import data
from artylyze.train.checkpoint import (
    ONLINE_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_optimizer,
    load_weights,
    read_config,
    save_checkpoint,
)
from artylyze.train.config import MODES, TrainConfig
from artylyze.train.ema import WeightAverage
from artylyze.train.inputs import FeatureInputs, ImageInputs, Inputs, start_key
from artylyze.train.metrics import mean_macro_f1, split_metrics
from artylyze.train.models import MultiTaskNet, build_model
from artylyze.train.objective import lr_factor, masked_loss
from artylyze.train.splits import load_splits

Log = Callable[[str], None]
LOG_SECONDS = 10.0  # progress lines while an epoch runs: one at its start, then at most this often


#: What must match for ``OUT/last`` to be resumed rather than refused as another run's.
RESUME_KEYS = ("manifest", "backbone", "mode", "init", "weights", "tasks", "input_size",
               "resize", "embedding_dim", "limit")


class Trainer:
    """Owns one run: model, optimizer, data and the checkpoints under ``cfg.out``.

    One loop serves both modes; :mod:`artylyze.train.inputs` says what a step feeds the heads
    (augmented crops, or cached backbone features when frozen). Both warm up, stop early
    and resume from ``last/``.
    """

    def __init__(self, cfg: TrainConfig, log: Log = print) -> None:
        if cfg.balance not in data.BALANCE_MODES:
            raise ValueError(f"unknown balance {cfg.balance!r}; choose {data.BALANCE_MODES}")
        if cfg.mode not in MODES:
            raise ValueError(f"unknown mode {cfg.mode!r}; choose {' or '.join(MODES)}")
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        self.splits, self.enc, self.data_summary = load_splits(
            cfg.manifest, tuple(cfg.tasks), cfg.input_size, cfg.resize,
            self.out.parent / ".cache", cfg.limit, cfg.seed, log)
        tasks = {t: len(v) for t, v in self.enc.labels.items()}
        self.model = build_model(cfg.backbone, tasks, cfg.embedding_dim, cfg.pretrained,
                                 cfg.weights)
        if cfg.init:
            self.start_from(cfg.init)
        train_codes = self.splits["train"].codes
        self.weights = {  # the year is regressed: balancing decades would bias every estimate
            t: torch.from_numpy(data.class_weights(c, tasks[t]))
            if cfg.balance == "weighted-loss" and t != data.YEAR_TASK else None
            for t, c in train_codes.items()}
        self.history: list[dict] = []
        self.best = -1.0
        self.epoch = 0
        finetune = cfg.mode == "finetune"
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay and finetune \
            else None
        self.check_resumable()
        self.inputs = self.make_inputs()

    def make_inputs(self) -> Inputs:
        cfg, train, val = self.cfg, self.splits["train"], self.splits["val"]
        if cfg.mode == "frozen":
            key = start_key(cfg.backbone, cfg.init, cfg.weights, cfg.pretrained,
                            cfg.input_size, cfg.resize)
            return FeatureInputs(self.model, train, val, self.out, key, self.log)
        return ImageInputs(train, val, cfg.train_size, cfg.bf16,
                           data.Degrade() if cfg.degrade else None)

    def start_from(self, ckpt_dir: str) -> None:
        """Load a checkpoint's weights; its tasks and labels must be this run's."""
        config = read_config(ckpt_dir)
        theirs = {t["name"]: t["labels"] for t in config["tasks"]}
        if theirs != self.enc.labels or config["backbone"] != self.cfg.backbone:
            raise CheckpointError(f"--init {ckpt_dir}: its backbone or task labels differ "
                                  "from this run's manifest")
        load_weights(self.model, ckpt_dir)
        self.log(f"started from {ckpt_dir}")

    def config_dict(self, metrics: dict | None = None) -> dict:
        return {
            "name": self.cfg.name or f"artylyze-{self.cfg.backbone}",
            "backbone": self.cfg.backbone,
            "tasks": [{"name": t, "labels": v,
                       **({"kind": "year", "step": data.YEAR_STEP} if t == data.YEAR_TASK
                          else {})} for t, v in self.enc.labels.items()],
            "embedding_dim": self.cfg.embedding_dim,
            "input_size": self.cfg.input_size,
            "resize": self.cfg.resize,
            "train_config": asdict(self.cfg),
            "data": self.data_summary,
            "epoch": self.epoch,
            "best_val_macro_f1": self.best,
            "history": self.history,
            "val_metrics": metrics,
        }

    def param_groups(self) -> list[dict]:
        """Heads and embedding at ``lr``; when fine-tuning, the backbone (less its frozen
        stem) at ``backbone_lr``. Frozen parameters stop taking gradients."""
        cfg, model = self.cfg, self.model
        heads = [*model.embed.parameters(), *model.heads.parameters()]
        if cfg.mode == "frozen":
            frozen, groups = list(model.backbone.parameters()), []
        else:
            frozen = [p for m in (model.stem if cfg.freeze_stem else []) for p in m.parameters()]
            skip = {id(p) for p in frozen}
            groups = [{"params": [p for p in model.backbone.parameters() if id(p) not in skip],
                       "base_lr": cfg.backbone_lr}]
        for p in frozen:
            p.requires_grad_(False)
        return [*groups, {"params": heads, "base_lr": cfg.lr}]

    def run(self) -> Path:
        """Train to ``cfg.epochs`` (or early stop), resuming ``last/``; returns ``best/``."""
        cfg = self.cfg
        opt = torch.optim.AdamW(self.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if (self.out / "last").is_dir():
            self.resume(opt)
        train = self.splits["train"]
        steps = math.ceil(len(train.paths) / cfg.batch_size)
        total, warmup = cfg.epochs * steps, int(cfg.warmup_epochs * steps)
        targets = {t: torch.from_numpy(c) for t, c in train.codes.items()}
        gen = torch.Generator()
        while self.epoch < cfg.epochs and not self.should_stop():
            rng = np.random.default_rng([cfg.seed, self.epoch])
            gen.manual_seed(cfg.seed * 1000 + self.epoch)
            order = data.epoch_order(cfg.balance, train.codes, cfg.tasks[0], rng)
            self.set_train_mode()
            t0, last_log, seen, running = time.time(), 0.0, 0, 0.0
            for b, i in enumerate(range(0, len(order), cfg.batch_size)):
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * lr_factor(self.epoch * steps + b, warmup, total)
                ix = np.sort(order[i:i + cfg.batch_size])  # sorted: sequential memory reads
                out = self.inputs.forward(self.model, ix, gen)
                loss = masked_loss(out, {t: v[ix] for t, v in targets.items()}, self.weights,
                                   cfg.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.ema:
                    self.ema.update(self.model)
                seen += len(ix)
                running = 0.9 * running + 0.1 * loss.item() if b else loss.item()
                if time.time() - last_log >= LOG_SECONDS:
                    last_log = time.time()
                    rate = seen / max(last_log - t0, 1e-9)
                    eta = (len(order) - seen) / rate
                    self.log(f"epoch {self.epoch + 1}/{cfg.epochs} step {b}/{steps} loss "
                             f"{running:.3f} {rate:.1f} img/s eta {eta:.0f}s")
            metrics = split_metrics(self.inputs.val_outputs(self.evaluated),
                                    self.splits["val"].codes, self.enc.labels)
            self._end_epoch(self.epoch + 1, running, metrics, opt, time.time() - t0)
        return self.out / "best"

    def set_train_mode(self) -> None:
        """Train mode, except the frozen stem and, with ``freeze_bn``, every batch norm: a
        backbone recovered from a bundle has its batch norms folded into the convolutions
        (identity statistics), which batch statistics would undo."""
        self.model.train()
        for m in self.model.stem if self.cfg.freeze_stem else []:
            m.eval()
        if self.cfg.freeze_bn:
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def best_val_outputs(self, best: Path) -> dict[str, np.ndarray]:
        """The best checkpoint's val outputs in full precision (what calibration fits on),
        from the images or cached features already in memory."""
        load_weights(self.model, best)
        return self.inputs.val_outputs(self.model, exact=True)

    @property
    def evaluated(self) -> MultiTaskNet:
        """The weights that are validated, saved and exported: the average when there is one."""
        return self.ema.model if self.ema else self.model

    def _end_epoch(self, epoch: int, loss: float, metrics: dict, opt, seconds: float) -> None:
        self.epoch = epoch
        score = mean_macro_f1(metrics)
        self.history.append({"epoch": epoch, "train_loss": loss, "val_mean_macro_f1": score,
                             "seconds": round(seconds, 1),
                             **{f"val_{t}_acc": m["accuracy"] for t, m in metrics.items()}})
        accs = " ".join(f"{t}={m['accuracy']:.3f}" for t, m in metrics.items())
        self.log(f"epoch {epoch}: loss {loss:.3f} val macro-F1 {score:.4f} acc {accs}")
        if score > self.best:
            self.best = score
            save_checkpoint(self.out / "best", self.evaluated, self.config_dict(metrics))
            self.log(f"epoch {epoch}: new best -> {self.out / 'best'}")
        save_checkpoint(self.out / "last", self.evaluated, self.config_dict(metrics), opt,
                        online=self.model if self.ema else None)
        (self.out / "history.json").write_text(json.dumps(self.history, indent=2))

    def should_stop(self) -> bool:
        """Early stopping: no improvement of mean val macro-F1 for ``patience`` epochs."""
        if len(self.history) <= self.cfg.patience:
            return False
        best_epoch = max(self.history, key=lambda h: h["val_mean_macro_f1"])["epoch"]
        return self.epoch - best_epoch >= self.cfg.patience

    def check_resumable(self) -> None:
        """Refuse a ``last/`` left by a different run rather than mix the two (checked before
        any features are computed)."""
        last = self.out / "last"
        for kept in (last, self.out / "best"):  # a save cut short by a crash
            recover_dir(kept)
        if not last.is_dir():
            return
        theirs, ours = read_config(last).get("train_config", {}), asdict(self.cfg)
        for key in RESUME_KEYS:
            if key in theirs and theirs[key] != ours[key]:
                raise CheckpointError(f"{last} is from another run ({key} {theirs[key]!r}, "
                                      f"this run {ours[key]!r}); use another --out")

    def resume(self, opt: torch.optim.Optimizer) -> None:
        """Continue from ``last/``: online weights, average, optimizer, history."""
        last = self.out / "last"
        config = read_config(last)
        online = ONLINE_FILE if (last / ONLINE_FILE).is_file() else WEIGHTS_FILE
        load_weights(self.model, last, online)
        if self.ema:
            load_weights(self.ema.model, last)
            self.ema.updates = config["epoch"] * math.ceil(len(self.splits["train"].paths)
                                                           / self.cfg.batch_size)
        load_optimizer(last, opt)
        self.epoch, self.history = config["epoch"], config["history"]
        self.best = config["best_val_macro_f1"]
        self.log(f"resumed from {last} after epoch {self.epoch}")


def train(cfg: TrainConfig, log: Log = print) -> Path:
    """Run training, then fit calibration on val; returns the directory of the best checkpoint."""
    from artylyze.train.calibrate import calibrate_checkpoint

    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, log)
    best = trainer.run()
    calibrate_checkpoint(best, cfg.manifest, log, trainer.best_val_outputs(best),
                         trainer.splits["val"].paths)
    return best
