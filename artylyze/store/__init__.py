"""meta.parquet: the schema, the incremental state, and how a run's results reach the disk.

One module per job: :mod:`~artylyze.store.paths` (path text), :mod:`~artylyze.store.schema`
(columns, metadata keys, rows), :mod:`~artylyze.store.target` (where the output, its lock
and the work dir live), :mod:`~artylyze.store.state` (what is known: lookup, record, sweep),
:mod:`~artylyze.store.parts` (crash-safe chunks), :mod:`~artylyze.store.merge` (the final
merge and swap), and :class:`~artylyze.store.run.Store`, the one object the engines call;
:mod:`~artylyze.store.lock` (one writer per output) and :mod:`artylyze.signals` (a stop
signal waits until a swap is done) keep every output on disk whole, the index's too.
The names below are those other modules import from ``artylyze.store``.

May import: the foundations and :mod:`artylyze.model` (the bundle manifest a row records).
"""

from artylyze.store.merge import ROWS_PER_FILE, write_output
from artylyze.store.parts import PartWriter, ReuseRecord
from artylyze.store.paths import decode_path, encode_path, file_path
from artylyze.store.run import Store
from artylyze.store.schema import (
    FIXED_COLUMNS,
    IIIF_COLUMNS,
    KNOWN_COLUMNS,
    META_BUNDLE,
    META_REUSED,
    META_ROOT,
    META_SCHEMA_VERSION,
    META_TOP_K,
    ROW_GROUP_ROWS,
    SCHEMA_VERSION,
    TOP_TYPE,
    YEAR_COLUMNS,
    StoreError,
    build_row,
    key_from_metadata,
    label_columns,
    make_schema,
    result_key,
    rows_to_table,
)
from artylyze.store.state import (
    OLD,
    Known,
    State,
    foreign_reason,
    known_in,
    known_rows,
    load_state,
    read_schema,
    refuse_foreign,
)
from artylyze.store.target import (
    OutputLock,
    OutputLockedError,
    OutputTarget,
    output_errors,
    remove_workdir,
)

__all__ = [
    "FIXED_COLUMNS", "IIIF_COLUMNS", "KNOWN_COLUMNS", "META_BUNDLE", "META_REUSED", "META_ROOT",
    "META_SCHEMA_VERSION", "META_TOP_K", "OLD", "ROWS_PER_FILE", "ROW_GROUP_ROWS",
    "SCHEMA_VERSION", "TOP_TYPE", "YEAR_COLUMNS", "Known", "OutputLock", "OutputLockedError",
    "OutputTarget", "PartWriter", "ReuseRecord", "State", "Store", "StoreError", "build_row",
    "decode_path", "encode_path", "file_path", "foreign_reason", "key_from_metadata",
    "known_in", "known_rows", "label_columns", "load_state", "make_schema", "output_errors",
    "read_schema", "refuse_foreign", "remove_workdir", "result_key", "rows_to_table",
    "write_output",
]
