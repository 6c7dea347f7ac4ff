"""Parquet shards: written whole under a temporary name and renamed, so no reader ever sees half a
file; vetted cheaply before DuckDB reads them; compacted so long runs do not leave thousands of
tiny files.

A shard is ``part-<n>.parquet``; a compacted one is ``part-<first>-<last>.parquet`` and replaces
the shards ``first..last``. If a process dies between writing a compacted shard and deleting the
shards it replaces, the range in its name tells readers which leftovers to ignore.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^part-(\d+)(?:-(\d+))?\.parquet$")
_MAGIC = b"PAR1"
SMALL_SHARD_BYTES = 8 << 20
MERGE_BYTES = 64 << 20  # a merge rewrites at most this much
ROLLING_COMPACT_AT = 64  # small shards in one table directory before they are merged


@dataclass(frozen=True, order=True)
class Shard:
    first: int
    last: int
    path: Path


def write_shard_atomic(table: Any, path: Path) -> None:
    """Write an Arrow ``table`` to ``path`` so that readers see either no file or the whole file."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def list_shards(table_dir: Path) -> list[Shard]:
    """The live shards of one table directory in write order, leftovers of an interrupted
    compaction (shards covered by a compacted one) excluded."""
    try:
        names = os.listdir(table_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    shards = []
    for name in names:
        m = _NAME.match(name)
        if m:
            first = int(m.group(1))
            shards.append(Shard(first, int(m.group(2) or first), table_dir / name))
    shards.sort()
    ranges = [(s.first, s.last) for s in shards if s.last > s.first]
    return [s for s in shards if s.last > s.first or not any(a <= s.first <= b for a, b in ranges)]


def next_index(table_dir: Path) -> int:
    shards = list_shards(table_dir)
    return max((s.last for s in shards), default=-1) + 1


def shard_path(table_dir: Path, first: int, last: int | None = None) -> Path:
    if last is None or last == first:
        return table_dir / f"part-{first:06d}.parquet"
    return table_dir / f"part-{first:06d}-{last:06d}.parquet"


def is_readable_shard(path: Path) -> bool:
    """Cheap structural check (two small reads): Parquet magic at both ends and a footer that
    fits in the file. Catches truncated, empty and foreign files, which make DuckDB fail a
    whole query."""
    try:
        size = path.stat().st_size
        if size < 12:
            return False
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(size - 8)
            tail = f.read(8)
    except OSError:
        return False
    footer_len = int.from_bytes(tail[:4], "little")
    return head == _MAGIC and tail[4:] == _MAGIC and 0 < footer_len <= size - 12


def compact(table_dir: Path, min_shards: int = 2) -> Path | None:
    """Merge the first run of small shards in ``table_dir`` (up to ``MERGE_BYTES`` of them) into one
    when there are at least ``min_shards``. Streams shard by shard, so memory stays bounded by
    the largest shard. Unreadable shards are left alone. Returns the new shard."""
    small = []
    total = 0
    for shard in list_shards(table_dir):
        size = shard.path.stat().st_size
        if size >= SMALL_SHARD_BYTES or not is_readable_shard(shard.path) or total + size > MERGE_BYTES:
            if len(small) >= min_shards:
                break
            small, total = [], 0
            continue
        small.append(shard)
        total += size
    if len(small) < min_shards:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.unify_schemas([pq.read_schema(s.path) for s in small])
    target = shard_path(table_dir, small[0].first, small[-1].last)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for shard in small:
                table = pq.read_table(shard.path)
                columns = [
                    table.column(f.name) if f.name in table.column_names else pa.nulls(len(table), f.type)
                    for f in schema
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    for shard in small:
        if shard.path != target:
            shard.path.unlink(missing_ok=True)
    return target
