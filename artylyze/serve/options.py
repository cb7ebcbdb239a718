"""Every setting of the service with its default, held once (as httpx's ``Limits`` and
``Timeout`` do); the CLI reads its defaults from here."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ENV_VAR = "ARTYLYZE_SERVE_OPTIONS"  # how uvicorn's worker processes get the options
MIB = 1 << 20


@dataclass(frozen=True)
class ServeOptions:
    """What to serve and how much of the machine a request may take."""

    index: Path | None = None  # None: the shipped gallery
    meta: Path | None = None  # a meta.parquet whose rows add detail to the indexed works
    collection: Path | None = None  # where the works' files live (default: the index's root)
    bundle: Path | None = None  # default: the index's own
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    device: str = "cpu"
    threads: int | None = None  # onnxruntime threads per worker (default: cores / workers)
    root_path: str = ""  # the prefix a reverse proxy serves us under, e.g. /artylyze
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    max_upload_bytes: int = 20 * MIB
    max_pixels: int = 50_000_000
    max_inflight: int = 32  # uploads being read, decoded or inferred; beyond: 503
    max_connections: int = 256  # uvicorn's limit_concurrency; beyond: 503
    upload_timeout_s: float = 30.0  # to receive the body; beyond: 408
    timeout_s: float = 30.0  # to decode and infer once received; beyond: 503
    retry_after_s: int = 2
    max_batch: int | None = None  # images per inference call; None: see default_batch
    batch_wait_ms: float = 2.0
    max_k: int = 100
    max_page: int = 200
    decode_threads: int | None = None  # default: the usable cores

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
