"""The one object both tagging engines call: a run's output, from lock to final swap.

Order of a run: :meth:`Store.open` (lock, crash recovery) -> the caller walks the collection
-> :meth:`Store.load` (the state: what the old output and an interrupted run's parts hold)
-> the engine files rows with :meth:`Store.commit` and the state's ``record`` -> the state's
``sweep`` -> :meth:`Store.finish` (merge old rows and parts into the new output, swap it in).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from artylyze.model.bundle import Manifest
from artylyze.store.lock import FileLock
from artylyze.store.merge import write_output
from artylyze.store.parts import PartWriter, ReuseRecord
from artylyze.store.schema import make_schema, result_key
from artylyze.store.state import State, load_state
from artylyze.store.target import OutputLock, OutputTarget, output_errors


class Store:
    """meta.parquet (a file or a dataset folder) as one run sees and changes it."""

    def __init__(self, target: OutputTarget, manifest: Manifest, root: str, top_k: int,
                 extra: tuple[str, ...] = ()) -> None:
        self.target = target
        self.model = manifest.model_id
        self.key = result_key(manifest, top_k)
        self.schema = make_schema(manifest, root, top_k, extra)
        self._state: State | None = None
        self._writer: PartWriter | None = None

    @contextmanager
    def open(self) -> Iterator[FileLock]:
        """Hold the output's lock for the block; OSErrors become StoreErrors with a kind."""
        with output_errors(self.target.path), OutputLock(self.target) as lock:
            self.target.recover()
            self.target.check_replaceable()
            yield lock

    def load(self, full: bool, force: bool) -> State:
        """Read what is known; an output ArtyLyze did not write is refused unless ``force``."""
        self._state = load_state(self.target, self.key, full, force, self.schema.names)
        self._writer = PartWriter(self.target, self.schema, self.key, full,
                                  self._state.next_part())
        return self._state

    @property
    def state(self) -> State:
        assert self._state is not None, "Store.load first"
        return self._state

    @property
    def part(self) -> int:
        """The number of the part the next commit writes (the source rows get in the state)."""
        assert self._writer is not None, "Store.load first"
        return self._writer.number

    def commit(self, rows: list[dict[str, Any]], reused: list[ReuseRecord]) -> None:
        """Make rows and reuse records count: one crash-safe part in the work dir."""
        assert self._writer is not None, "Store.load first"
        self._writer.commit(rows, reused)

    def finish(self, pruned: int) -> tuple[int, bool]:
        """Merge into the new output and swap it in; (rows in the output, left unchanged).
        With no new part and nothing ``pruned`` the output (and its mtime) is left alone."""
        state = self.state
        parts = sorted(self.target.workdir.glob("part-*.parquet"))
        if parts or pruned or not state.old_files:
            rows, _ = write_output(self.target, self.schema, state, parts, self.model)
            unchanged = False
        else:
            rows, unchanged = state.old_rows, True
        self.target.remove_workdir()
        return rows, unchanged
