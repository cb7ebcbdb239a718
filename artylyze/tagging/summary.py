"""What a run did, for people (the CLI's summary) and scripts; both engines fill the same one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from artylyze.tagging.walk import WalkProblem


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the run."""

    walk: float = 0.0
    plan: float = 0.0  # reading the previous output and finished parts
    decode_wait: float = 0.0  # waiting for decoded images (Ray: for decode + inference)
    inference: float = 0.0  # in the driver's onnxruntime calls (Ray: 0, the actors infer)
    write: float = 0.0  # building rows and committing parts
    merge: float = 0.0  # writing the final output


@dataclass
class TagSummary:
    """What a run did; ``images_inferred == 0`` proves a run re-used everything."""

    root: str
    output: str
    model: str
    engine: str = "local"  # local | ray: which distributor decoded and inferred
    files_seen: int = 0
    tagged: int = 0  # inferred this run, status ok
    reused: int = 0  # content seen before (sha256): predictions copied, no inference
    unchanged: int = 0  # same size and mtime as recorded: not even read
    errors: int = 0  # error rows among the files seen (this run's and unchanged ones)
    errors_by_kind: Counter = field(default_factory=Counter)  # the errors' ``kind`` values
    resumed: int = 0  # rows found in the parts of an interrupted run
    pruned: int = 0
    missing_kept: int = 0  # rows of files no longer found, kept (no --prune)
    rows_written: int = 0  # rows in the output now
    output_unchanged: bool = False  # nothing new: the output was left as it was
    inference_calls: int = 0
    images_inferred: int = 0
    workers: int = 0  # decode workers (Ray: inference actors; 0 when none were needed)
    threads: int = 0  # onnxruntime threads (Ray: per actor)
    executor: str = ""  # thread | process | ray
    address: str = ""  # the Ray cluster a Ray run used ("" when it needed none)
    requests: int = 0  # IIIF: HTTP requests made (documents, info.json, images, retries)
    bytes_fetched: int = 0  # IIIF: bytes downloaded
    seconds: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)
    walk_problems: list[WalkProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        """Files read this run (tagged, reused or failed)."""
        return self.tagged + self.reused + self.errors_this_run

    @property
    def errors_this_run(self) -> int:
        return sum(n for k, n in self.errors_by_kind.items() if k != "unchanged")

    @property
    def ok_files(self) -> int:
        """Files seen that now have an ok row."""
        return self.files_seen - self.errors

    @property
    def files_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0
