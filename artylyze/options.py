"""Every default of the command line, with the help text that describes it, held once.

The CLI declares its options with these values and texts, and the library modules that
have a default of their own read it from here, so ``--help`` and the behaviour cannot drift
apart. This module imports nothing heavy (no numpy, no onnxruntime), so ``artylyze --help``
stays fast. ``tests/test_options.py`` checks every command against :data:`COMMANDS`.

Every option whose default is a value is here (the test fails otherwise), and so is every
option whose help describes what a library module does when it is not given (``--workers``,
``--threads``, ``--batch``). Plain switches and paths that default to None stay in their CLI
module with their help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


class Opt(NamedTuple):
    """A default and the help text that tells the user what it does."""

    default: Any
    help: str = ""


# Shared by several commands and library modules.
MAX_PIXELS = 180_000_000  # decompression-bomb guard of artylyze.imaging while tagging
MAX_BYTES = 2 * 1024**3
DEFAULT_OPSET = 18  # the exporter writes this opset natively (see artylyze.export.graph)
MIN_OPSET = 18
ID_COLUMN = "id"
FILE_COLUMN = "file"
TASKS = ("style", "genre", "artist", "nationality", "year")
DEVICE = Opt("cpu", "cpu, cuda or auto.")


class Tag:
    """``artylyze tag``; the thread policy is ``artylyze.tagging.engine.plan_threads``."""

    batch_size = Opt(32, "Images per inference call.")
    workers = Opt(None, "Decode workers (default: all usable cores on CPU, sharing them with "
                  "the inference threads; on a GPU the cores not given to inference).")
    threads = Opt(None, "onnxruntime threads (default: all usable cores on CPU; they do not "
                  "spin, so the OS gives the cores to decoding or inference as each has "
                  "work; 1 on a GPU).")
    device = DEVICE
    top_k = Opt(3, "Labels kept per task, best first.")
    max_pixels = Opt(MAX_PIXELS, "Refuse images larger than this (decompression bombs); "
                     "they get an error row.")
    max_bytes = Opt(MAX_BYTES, "Refuse files larger than this many bytes without reading "
                    "them; they get an error row.")
    commit_every = Opt(4096, "Rows per committed chunk: a crash loses at most this many "
                       "(or 60 s of work).")
    executor = Opt("thread", "Decode in 'thread's (default) or 'process'es.")
    engine = Opt("local", "'local' (default): this machine. 'ray': a Ray cluster (needs the "
                 "'ray' extra); --out is then a folder of part files, --threads is per actor.")
    # a IIIF Manifest or Collection (an http(s) URL or a JSON file) instead of a folder
    max_per_host = Opt(4, "IIIF: requests at once to one host (be polite to museums).")
    timeout = Opt(30.0, "IIIF: seconds to wait for a connection or data (4x for a whole "
                  "response); a canvas that times out gets an error row.")
    retries = Opt(3, "IIIF: tries again after a 429, 5xx or refused connection, with "
                  "backoff that honours Retry-After.")
    max_redirects = Opt(5, "IIIF: redirects followed per request (http/https only).")
    max_wait = Opt(120.0, "IIIF: longest Retry-After honoured, in seconds; longer gives up.")
    max_canvases = Opt(1_000_000, "IIIF: stop walking after this many canvases.")
    max_manifests = Opt(10_000, "IIIF: stop walking after this many manifests.")
    max_depth = Opt(8, "IIIF: deepest nesting of collections followed.")
    id_column = Opt(ID_COLUMN, "With --records: the column holding the id (e.g. an accession "
                    "number).")
    file_column = Opt(FILE_COLUMN, "With --records: the column holding the file name or its "
                      "path under COLLECTION.")


class Similar:
    """``artylyze similar``."""

    k = Opt(10, "Results per image.")
    device = DEVICE


class Influence:
    """``artylyze influence``."""

    top = Opt(5, "Clusters to describe.")
    device = DEVICE


class Explain:
    """``artylyze explain``; masking defaults: ``artylyze.explain.saliency.SaliencyOptions``."""

    out = Opt(Path("explain"), "Folder for the PNGs and index.html.")
    method = Opt("rise", "Masking method: rise (smooth random masks) or occlusion "
                 "(a sliding window).")
    masks = Opt(32, "RISE: masked forward passes per image.")
    seed = Opt(0, "RISE: seed of the masks.")
    device = DEVICE
    threads = Opt(None, "onnxruntime threads (default: all usable cores).")


class Report:
    """``artylyze report``."""

    cases = Opt(6, "Case studies: the works with the most mixed membership.")


class IndexBuild:
    """``artylyze index build``; also ``artylyze.index.build.BuildOptions``' defaults."""

    covariance = Opt("diag", "GMM covariance: diag or full.")
    cluster_dims = Opt(32, "PCA dims the clusters are fitted in.")
    seed = Opt(0, "Seed for sampling and clustering.")
    chunk_rows = Opt(65_536, "Rows read at a time when streaming.")


class Dataset:
    """``artylyze dataset build``."""

    out = Opt(Path("manifest.parquet"), "Manifest Parquet.")
    min_count = Opt(30, "Classes rarer than this become unknown.")
    period_step = Opt(50, "Years per period bin.")
    folder_task = Opt("style", "Task named by the folder (no --labels).")
    id_column = Opt(ID_COLUMN, "With --records: the column holding the id.")
    file_column = Opt(FILE_COLUMN, "With --records: the column holding the file name or its "
                      "path under the image folders.")


class Train:
    """``artylyze train``; ``artylyze.train.loop.TrainConfig`` is meant to read the same."""

    out = Opt(Path("runs/model"), "Run directory.")
    backbone = Opt("efficientnet_lite0", "efficientnet_lite0, efficientnet_lite0_texture (plus "
                   "texture statistics of the middle blocks), mobilenet_v3_large, "
                   "mobilenet_v3_small, mobilenet_v2, cnn3.")
    mode = Opt("finetune", "frozen: heads on cached features.")
    epochs = Opt(14, "Epochs at most (early stopping may end sooner).")
    batch_size = Opt(48, "Images per training step.")
    lr = Opt(1e-3, "Learning rate of embedding and heads.")
    backbone_lr = Opt(3e-4, "Learning rate of the unfrozen backbone.")
    balance = Opt("weighted-loss", "Class-imbalance handling.")
    train_size = Opt(192, "Crop size while fine-tuning.")
    input_size = Opt(224, "Bundle input size (validation, export).")
    embedding_dim = Opt(256, "Size of the embedding.")
    patience = Opt(4, "Early stopping patience in epochs.")
    ema_decay = Opt(0.997, "Weight averaging while fine-tuning; 0 turns it off.")
    seed = Opt(0, "Seed of initialization, sampling and augmentation.")
    bf16 = Opt(True, "bfloat16 autocast while training on CPU.")
    degrade = Opt(True, "Random JPEG re-compression, blur and colour jitter while "
                  "fine-tuning, so the model cannot learn a source's file quality.")
    freeze_bn = Opt(False, "Keep batch-norm statistics fixed, e.g. when --weights come from "
                    "a bundle (python -m artylyze.train.from_bundle), whose batch norms are "
                    "folded.")
    tasks = Opt(",".join(TASKS), "Comma-separated tasks to learn (year: decades, from "
                "recorded years; the period is derived from it).")


class Evaluate:
    """``artylyze evaluate``; also ``artylyze.explain.evaluation.evaluate``'s defaults."""

    split = Opt("test", "Split to evaluate.")
    out = Opt(Path("eval"), "Folder for metrics.json + PNGs.")
    plots = Opt(True, "Write PNG plots.")
    saliency = Opt(2, "Right and wrong examples per class, with saliency maps, in the "
                   "'what the model looks at' sheets (0: none).")


class Export:
    """``artylyze export``; also ``artylyze.export.export_bundle``'s defaults."""

    opset = Opt(DEFAULT_OPSET, "ONNX opset of the graph.")
    check_count = Opt(16, "Images used for the parity check.")
    calibration_count = Opt(128, "Calibration images.")
    max_style_drop = Opt(1.5, "Largest style accuracy loss (points) int8 may cost.")
    threads = Opt(None, "onnxruntime threads for checks and timing (default: usable cores).")


class Write:
    """``artylyze write``; also ``artylyze.metadata.sidecar.SidecarOptions``' defaults."""

    min_score = Opt(0.5, "Labels at least this sure go into the IPTC fields and keywords "
                    "(models with <task>_confident use that instead).")
    creator_min_score = Opt(0.8, "The predicted artist is suggested as the artwork's creator "
                            "from this score; never over a creator already there.")
    creator = Opt(True, "Suggest the predicted artist as the creator.")
    motivation = Opt("tagging", "--iiif: the annotations' motivation: 'tagging' (what "
                     "Mirador lists) or 'classifying'.")


MIB = 1 << 20


class Serve:
    """``artylyze serve``; also ``artylyze.serve.options.ServeOptions``' defaults."""

    host = Opt("127.0.0.1", "Address to bind.")
    port = Opt(8000, "Port to listen on.")
    workers = Opt(1, "Server processes, each with its own model session.")
    threads = Opt(None, "onnxruntime threads per worker (default: cores / workers).")
    device = DEVICE
    max_upload_mb = Opt(20.0, "Largest upload accepted (413 beyond).")
    max_pixels = Opt(50_000_000, "Largest image decoded (422 beyond).")
    max_inflight = Opt(32, "Uploads in progress at once per worker (503 beyond).")
    timeout = Opt(30.0, "Seconds to decode and infer an upload (503 beyond).")
    batch = Opt(None, "Most images of concurrent requests per inference call (default: 16 "
                "on a GPU, 1 on CPU, where batches cost more per image).")
    batch_wait_ms = Opt(2.0, "How long an image waits for others to join its batch.")
    root_path = Opt("", "Prefix a reverse proxy serves this under, e.g. /artylyze.")


# Each command (as typed after ``artylyze``) and the class holding its defaults.
COMMANDS: dict[str, type] = {
    "tag": Tag, "similar": Similar, "influence": Influence, "explain": Explain,
    "report": Report, "index build": IndexBuild, "dataset build": Dataset, "train": Train,
    "evaluate": Evaluate, "export": Export, "write": Write, "serve": Serve,
}


def specs(command: type) -> dict[str, Opt]:
    """The options a command class declares, by parameter name."""
    return {name: value for name, value in vars(command).items() if isinstance(value, Opt)}
