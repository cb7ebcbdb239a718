"""Every setting of the service with its default, held once (as httpx's ``Limits`` and
``Timeout`` do); the CLI reads its defaults from here."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from artylyze.options import MIB
from artylyze.options import Serve as D

ENV_VAR = "ARTYLYZE_SERVE_OPTIONS"  # how uvicorn's worker processes get the options


@dataclass(frozen=True)
class ServeOptions:
    """What to serve and how much of the machine a request may take."""

    index: Path | None = None  # None: the shipped gallery
    meta: Path | None = None  # a meta.parquet whose rows add detail to the indexed works
    collection: Path | None = None  # where the works' files live (default: the index's root)
    bundle: Path | None = None  # default: the index's own
    host: str = D.host.default
    port: int = D.port.default
    workers: int = D.workers.default
    device: str = D.device.default
    threads: int | None = D.threads.default  # per worker (default: cores / workers)
    root_path: str = D.root_path.default  # a reverse proxy's prefix for us, e.g. /artylyze
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    max_upload_bytes: int = int(D.max_upload_mb.default * MIB)
    max_pixels: int = D.max_pixels.default
    max_inflight: int = D.max_inflight.default  # uploads read, decoded or inferred; then 503
    max_connections: int = 256  # uvicorn's limit_concurrency; beyond: 503
    upload_timeout_s: float = 30.0  # to receive the body; beyond: 408
    timeout_s: float = D.timeout.default  # to decode and infer once received; beyond: 503
    retry_after_s: int = 2
    max_batch: int | None = D.batch.default  # images per inference call; see default_batch
    batch_wait_ms: float = D.batch_wait_ms.default
    max_k: int = 100
    max_page: int = 200
    decode_threads: int | None = None  # default: the usable cores
    review: bool = False  # accept review writes (POST /v1/works/{id}/review)
    review_store: Path | None = None  # default: the store beside ``meta``
    review_token_file: Path | None = None  # default: a new token, printed at start
    review_token: str | None = None  # resolved at start (from the file, or new)
    filename_pattern: str | None = None  # titles from file names (index/filenames.py)

    def check(self) -> None:
        """Refuse settings that cannot work, with the option's name."""
        from artylyze.serve.errors import ServeConfigError

        positive = ("port", "workers", "max_upload_bytes", "max_pixels", "max_inflight",
                    "max_connections", "max_batch", "max_k", "max_page")
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ServeConfigError(f"{name.replace('_', '-')} must be at least 1")
        if self.timeout_s <= 0 or self.upload_timeout_s <= 0 or self.batch_wait_ms < 0:
            raise ServeConfigError("timeouts must be positive and the batch wait not negative")
        if self.filename_pattern is not None:
            from artylyze.index.errors import IndexBuildError
            from artylyze.index.filenames import compile_pattern

            try:
                compile_pattern(self.filename_pattern)
            except IndexBuildError as e:
                raise ServeConfigError(str(e)) from e
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ServeConfigError(f"root path {self.root_path!r} must start with / and not "
                                   "end with one (e.g. /artylyze)")

    def to_env(self) -> str:
        data = asdict(self)
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()})

    @classmethod
    def from_env(cls) -> ServeOptions:
        data = json.loads(os.environ[ENV_VAR])
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        data = {k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()}
        data["cors_origins"] = tuple(data.get("cors_origins") or ())
        return cls(**data)
