"""Parquet files of stored events: the schema, the writer, and a written file's row count.

A module of its own so that pyarrow, which brings numpy, is loaded only by a process that writes or
reads Parquet (an archive run, a Parquet export): together they are about 40 MiB, a quarter of a
web process's memory at start. streams.export and streams.archive import this module when they need
it, never at their own import.
"""

import os

import pyarrow as pa
import pyarrow.parquet as pq

from streams.api import FIELDS

# What pyarrow raises for a file it cannot write or read.
ArrowException = pa.ArrowException

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_TYPES = {
    "id": pa.int64(),
    "batch_id": pa.int64(),
    "source_id": pa.int64(),
    "received_at": _TIMESTAMP,
    "occurred_at": _TIMESTAMP,
    "activity_type_id": pa.int32(),
    "flags": pa.list_(pa.string()),
}
# Every other column is text; every column but id, batch_id, received_at, source_id, stream, type and raw may be null.
_REQUIRED = {"id", "batch_id", "received_at", "source_id", "stream", "type", "raw"}
SCHEMA = pa.schema([pa.field(name, _TYPES.get(name, pa.string()), nullable=name not in _REQUIRED) for name in FIELDS])


def write(chunks, out, row_group):
    """A Parquet file of SCHEMA (zstd), one row group per ``row_group`` rows; returns the rows written."""
    written, pending, pending_rows = 0, [], 0
    with pq.ParquetWriter(out, SCHEMA, compression="zstd") as writer:
        for rows in chunks:
            pending.append(record_batch(rows))
            pending_rows += len(rows)
            if pending_rows >= row_group:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=pending_rows)
                written, pending, pending_rows = written + pending_rows, [], 0
        if pending or not written:
            writer.write_table(pa.Table.from_batches(pending, schema=SCHEMA), row_group_size=max(pending_rows, 1))
            written += pending_rows
    return written


def record_batch(rows):
    columns = list(zip(*rows, strict=True))
    return pa.RecordBatch.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(columns, SCHEMA, strict=True)], schema=SCHEMA
    )


def footer_rows(file):
    """The row count in the footer of a Parquet file: a path, or a seekable binary file object."""
    if not isinstance(file, str | os.PathLike):
        file = pa.PythonFile(file, mode="r")
    return pq.read_metadata(file).num_rows
