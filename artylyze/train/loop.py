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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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
from artylyze.train.ema import WeightAverage
from artylyze.train.manifest import read_manifest
from artylyze.train.metrics import task_metrics
from artylyze.train.models import MultiTaskNet, build_model

Log = Callable[[str], None]


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
    tasks: list[str] = field(default_factory=lambda: list(data.DEFAULT_TASKS))


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, S, S, 3]
    codes: dict[str, np.ndarray]
    paths: list[str]


def load_splits(cfg: TrainConfig, log: Log) -> tuple[dict[str, Split], data.Encoded, dict]:
    df, root = read_manifest(cfg.manifest)
    enc = data.encode_labels(df, tuple(cfg.tasks))
    splits = {}
    for name in ("train", "val", "test"):
        rows = np.flatnonzero(df["split"].to_numpy() == name)
        if cfg.limit:
            rows = np.random.default_rng(cfg.seed).permutation(rows)[: cfg.limit]
            rows.sort()
        paths = df["path"].iloc[rows].tolist()
        t0 = time.time()
        images = data.load_image_array(paths, root, cfg.input_size, cfg.resize,
                                       Path(cfg.out).parent / ".cache")
        log(f"{name}: {len(rows)} images loaded in {time.time() - t0:.1f}s")
        splits[name] = Split(images, {t: c[rows] for t, c in enc.codes.items()}, paths)
    summary = {"manifest": str(cfg.manifest), "rows": {k: len(v.paths) for k, v in splits.items()},
               "classes": {t: len(v) for t, v in enc.labels.items()}}
    return splits, enc, summary


def masked_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                weights: dict[str, torch.Tensor | None], smoothing: float) -> torch.Tensor:
    """Sum over tasks of cross-entropy on the rows whose label is known (others are skipped);
    the year's target is a Gaussian over neighbouring decades, not one class."""
    total = outputs["embedding"].new_zeros(())
    for task, y in targets.items():
        known = y != data.UNKNOWN
        if not known.any():
            continue
        logits = outputs[task][known].float()
        if task == data.YEAR_TASK:
            soft = data.soft_year_targets(y[known], logits.shape[1])
            total = total + F.cross_entropy(logits, soft)
        else:
            total = total + F.cross_entropy(logits, y[known], weight=weights[task],
                                            label_smoothing=smoothing)
    return total


@torch.no_grad()
def predict(model: MultiTaskNet, images: np.ndarray, batch_size: int = 128,
            bf16: bool = False) -> dict[str, np.ndarray]:
    """Probabilities per task and L2-normalized embeddings for uint8 ``[N, S, S, 3]`` images."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), batch_size):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(data.to_tensor(images[i:i + batch_size]))
        for k, v in out.items():
            v = v.float()
            v = F.normalize(v, dim=1) if k == "embedding" else v.softmax(dim=1)
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def evaluate_split(probs: dict[str, np.ndarray], split: Split, labels: dict[str, list[str]]
                   ) -> dict[str, dict]:
    return {t: task_metrics(split.codes[t], probs[t], labels[t]) for t in labels}


def mean_macro_f1(metrics: dict[str, dict]) -> float:
    return float(np.mean([m["macro_f1"] for m in metrics.values()]))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class Trainer:
    """Owns one run: model, optimizer, data and the checkpoints under ``cfg.out``."""

    def __init__(self, cfg: TrainConfig, log: Log = print) -> None:
        if cfg.balance not in data.BALANCE_MODES:
            raise ValueError(f"unknown balance {cfg.balance!r}; choose {data.BALANCE_MODES}")
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        self.splits, self.enc, self.data_summary = load_splits(cfg, log)
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
        self.ema: WeightAverage | None = None
        self.noise = data.Degrade() if cfg.degrade else None

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

    # ---- frozen: features once, then heads in seconds -------------------------------------
    def feature_key(self, split: str) -> str:
        """What frozen features depend on: the starting weights, the input, the images."""
        import hashlib

        from artylyze.bundle import sha256_file

        cfg = self.cfg
        if cfg.init:
            start = sha256_file(Path(cfg.init) / WEIGHTS_FILE)
        else:
            start = cfg.weights or ("pretrained" if cfg.pretrained else "random")
        parts = [cfg.backbone, start, str(cfg.input_size), cfg.resize, *self.splits[split].paths]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def features(self, split: str) -> torch.Tensor:
        cache = self.out / f"features-{split}-{self.feature_key(split)}.npy"
        if cache.is_file():
            return torch.from_numpy(np.load(cache))
        self.model.eval()
        feats = []
        images = self.splits[split].images
        t0 = time.time()
        with torch.no_grad():
            for i in range(0, len(images), 64):
                x = self.model.normalize(data.to_tensor(images[i:i + 64]))
                feats.append(self.model.backbone(x))
                self.log(f"features {split}: {min(i + 64, len(images))}/{len(images)} "
                         f"({time.time() - t0:.0f}s)")
        f = torch.cat(feats)
        self.out.mkdir(parents=True, exist_ok=True)
        np.save(cache, f.numpy())
        return f

    def run_frozen(self) -> Path:
        cfg = self.cfg
        for p in self.model.backbone.parameters():
            p.requires_grad_(False)
        train_f, val_f = self.features("train"), self.features("val")
        head_params = [*self.model.embed.parameters(), *self.model.heads.parameters()]
        opt = torch.optim.AdamW(head_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed)
        codes = self.splits["train"].codes
        targets = {t: torch.from_numpy(c) for t, c in codes.items()}
        steps_per_epoch = math.ceil(len(train_f) / cfg.batch_size)
        total = cfg.epochs * steps_per_epoch
        step = 0
        for epoch in range(cfg.epochs):
            self.model.train()
            order = data.epoch_order(cfg.balance, codes, cfg.tasks[0], rng)
            for i in range(0, len(order), cfg.batch_size):
                ix = torch.from_numpy(order[i:i + cfg.batch_size])
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * lr_factor(step, steps_per_epoch, total)
                out = self.model.from_features(train_f[ix])
                loss = masked_loss(out, {t: y[ix] for t, y in targets.items()}, self.weights,
                                   cfg.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
            self.model.eval()
            with torch.no_grad():
                out = self.model.from_features(val_f)
            probs = {t: out[t].softmax(1).numpy() for t in self.enc.labels}
            self._end_epoch(epoch + 1, loss.item(), evaluate_split(probs, self.splits["val"],
                                                                   self.enc.labels), None)
        return self.out / "best"

    def frozen_val_outputs(self, best: Path) -> dict[str, np.ndarray]:
        """The best checkpoint's val outputs from the cached features (no second pass over
        the images): unit embeddings and softmax per task, as ``predict`` gives."""
        load_weights(self.model, best)
        self.model.eval()
        with torch.no_grad():
            out = self.model.from_features(self.features("val"))
        return {k: (F.normalize(v, dim=1) if k == "embedding" else v.softmax(1)).numpy()
                for k, v in out.items()}

    # ---- fine-tuning ---------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        cfg = self.cfg
        frozen = {id(p) for m in (self.model.stem if cfg.freeze_stem else [])
                  for p in m.parameters()}
        backbone = [p for p in self.model.backbone.parameters() if id(p) not in frozen]
        for m in self.model.stem if cfg.freeze_stem else []:
            for p in m.parameters():
                p.requires_grad_(False)
        heads = [*self.model.embed.parameters(), *self.model.heads.parameters()]
        return [{"params": backbone, "base_lr": cfg.backbone_lr},
                {"params": heads, "base_lr": cfg.lr}]

    def run_finetune(self) -> Path:
        cfg = self.cfg
        opt = torch.optim.AdamW(self.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.ema_decay:
            self.ema = WeightAverage(self.model, cfg.ema_decay)
        if (self.out / "last").is_dir():
            self.resume(opt)
        train = self.splits["train"]
        steps_per_epoch = math.ceil(len(train.paths) / cfg.batch_size)
        total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
        targets = {t: torch.from_numpy(c) for t, c in train.codes.items()}
        gen = torch.Generator().manual_seed(cfg.seed)
        while self.epoch < cfg.epochs and not self.should_stop():
            rng = np.random.default_rng([cfg.seed, self.epoch])
            gen.manual_seed(cfg.seed * 1000 + self.epoch)
            order = data.epoch_order(cfg.balance, train.codes, cfg.tasks[0], rng)
            self.set_train_mode()
            t0, seen, running = time.time(), 0, 0.0
            for b, i in enumerate(range(0, len(order), cfg.batch_size)):
                step = self.epoch * steps_per_epoch + b
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * lr_factor(step, warmup, total)
                ix = np.sort(order[i:i + cfg.batch_size])  # sorted: sequential memory reads
                x = data.augment(train.images[ix], cfg.train_size, gen, noise=self.noise)
                y = {t: v[ix] for t, v in targets.items()}
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                    out = self.model(x)
                loss = masked_loss(out, y, self.weights, cfg.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if self.ema:
                    self.ema.update(self.model)
                seen += len(ix)
                running = 0.9 * running + 0.1 * loss.item() if b else loss.item()
                if b % 20 == 0:
                    rate = seen / (time.time() - t0)
                    eta = (len(order) - seen) / rate
                    self.log(f"epoch {self.epoch + 1}/{cfg.epochs} step {b}/{steps_per_epoch} "
                             f"loss {running:.3f} {rate:.1f} img/s eta {eta:.0f}s")
            probs = predict(self.evaluated, self.splits["val"].images, bf16=cfg.bf16)
            metrics = evaluate_split(probs, self.splits["val"], self.enc.labels)
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

    @property
    def evaluated(self) -> MultiTaskNet:
        """The weights that are validated, saved and exported: the average when there is one."""
        return self.ema.model if self.ema else self.model

    def _end_epoch(self, epoch: int, loss: float, metrics: dict, opt, seconds: float = 0.0
                   ) -> None:
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

    def resume(self, opt: torch.optim.Optimizer) -> None:
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
    """Run training; returns the directory of the best checkpoint."""
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if cfg.mode not in ("frozen", "finetune"):
        raise ValueError(f"unknown mode {cfg.mode!r}; choose frozen or finetune")
    trainer = Trainer(cfg, log)
    best = trainer.run_frozen() if cfg.mode == "frozen" else trainer.run_finetune()
    from artylyze.train.calibrate import calibrate_checkpoint

    outputs = trainer.frozen_val_outputs(best) if cfg.mode == "frozen" else None
    calibrate_checkpoint(best, cfg.manifest, log, outputs, trainer.splits["val"].paths)
    return best
