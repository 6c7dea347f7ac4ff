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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^part-(\d+)(?:-(\d+))?\.parquet$")
_MAGIC = b"PAR1"
_FOOTER_PEEK = 16 << 10  # the schema comes first in the footer; columns beyond this are not parsed
SMALL_SHARD_BYTES = 1 << 20  # larger shards are not tiny: rewriting them would cost the training more than it saves
MERGE_BYTES = 64 << 20  # a merge rewrites at most this much
ROLLING_COMPACT_AT = 64  # small shards in one table directory before they are merged


@dataclass(frozen=True, order=True)
class Shard:
    first: int
    last: int
    path: Path


def write_shard_atomic(table: Any, path: Path) -> None:
    """Write an Arrow ``table`` to ``path`` so that readers see either no file or the whole file."""
    with ShardWriter(path) as writer:
        writer.write(table)


class ShardWriter:
    """One shard written from one or more Arrow tables (a row group each) under a temporary name,
    renamed when the ``with`` block ends without an error: readers see no file or the whole file,
    and a large flush is converted and written a piece at a time.

    Only string columns are dictionary-encoded: they repeat a few values (run id, key), while
    dictionary-encoding steps, times and values costs more time than it saves space."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        self._writer: Any = None

    def write(self, table: Any) -> None:
        if self._writer is None:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self.tmp, table.schema, **writer_options(table.schema))
        self._writer.write_table(table)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
                if exc_type is None:
                    os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


def writer_options(schema: Any) -> dict[str, Any]:
    """Parquet writer options for a shard of ``schema`` (see ``ShardWriter``). No Arrow schema in
    the file: columns may arrive dictionary-encoded, and every reader should see plain strings."""
    import pyarrow as pa

    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)]
    return {"use_dictionary": strings, "store_schema": False}


def list_shards(table_dir: Path) -> list[Shard]:
    """The live shards of one table directory in write order, leftovers of an interrupted
    compaction (shards covered by a compacted one) excluded."""
    try:
        names = os.listdir(table_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Shard(first, last, table_dir / name) for first, last, name in live_shard_names(names)]


def live_shard_names(names: Iterable[str]) -> list[tuple[int, int, str]]:
    """``(first, last, name)`` of the live shards among file names, sorted, leftovers excluded."""
    shards = []
    for name in names:
        m = _NAME.match(name)
        if m:
            first = int(m.group(1))
            shards.append((first, int(m.group(2) or first), name))
    shards.sort()
    ranges = [(a, b) for a, b, _ in shards if b > a]
    return [s for s in shards if s[1] > s[0] or not any(a <= s[0] <= b for a, b in ranges)]


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
    return inspect_shard(path)[0]


def inspect_shard(path: str | os.PathLike[str]) -> tuple[bool, tuple[tuple[str, int, int | None], ...] | None]:
    """``is_readable_shard`` and, in the same open, the shard's columns as ``(name, physical type,
    converted type)`` read from the footer, or None when they cannot be parsed (a reader then
    falls back to reading the file by name, slower but safe)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False, None
    try:
        size = os.fstat(fd).st_size
        if size < 12:
            return False, None
        head, tail = os.pread(fd, 4, 0), os.pread(fd, 8, size - 8)
        footer_len = int.from_bytes(tail[:4], "little")
        if head != _MAGIC or tail[4:] != _MAGIC or not 0 < footer_len <= size - 12:
            return False, None
        footer = os.pread(fd, min(footer_len, _FOOTER_PEEK), size - 8 - footer_len)
    except OSError:
        return False, None
    finally:
        os.close(fd)
    try:
        return True, _footer_columns(footer)
    except (IndexError, ValueError):
        return True, None


def _footer_columns(footer: bytes) -> tuple[tuple[str, int, int | None], ...] | None:
    """The flat columns in the schema of a Parquet footer (Thrift compact ``FileMetaData``, whose
    field 2 is the schema: a root element, then one element per column). Footers written with the
    same schema start with the same bytes, so those are remembered and parsed once."""
    for prefix, columns in _known_schemas.items():
        if footer.startswith(prefix):
            return columns
    r = _Thrift(footer)
    for fid, kind in r.fields():
        if fid != 2 or kind != 9:
            r.skip(kind)
            continue
        count, _ = r.list_header()
        elements = []
        for _ in range(count):
            elem: dict[int, Any] = {}
            for efid, ekind in r.fields():
                if efid in (1, 5, 6) and ekind == 5:
                    elem[efid] = r.zigzag()
                elif efid == 4 and ekind == 8:
                    elem[4] = r.binary().decode()
                else:
                    r.skip(ekind)
            elements.append(elem)
        leaves = elements[1:]
        if not elements or any(5 in e or 1 not in e for e in leaves):
            return None  # nested columns: not a trainatlas shard
        columns = tuple((e[4], e[1], e.get(6)) for e in leaves)
        if len(_known_schemas) < 64:
            _known_schemas[footer[: r.pos]] = columns
        return columns
    return None


_known_schemas: dict[bytes, tuple[tuple[str, int, int | None], ...]] = {}


class _Thrift:
    """Just enough of the Thrift compact protocol to walk a Parquet footer."""

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def byte(self) -> int:
        self.pos += 1
        return self.buf[self.pos - 1]

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return out

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def binary(self) -> bytes:
        n = self.varint()
        self.pos += n
        if self.pos > len(self.buf):
            raise IndexError("past the end")
        return self.buf[self.pos - n : self.pos]

    def fields(self) -> Iterator[tuple[int, int]]:
        """(field id, type) of each field of a struct, up to its stop byte."""
        fid = 0
        while (b := self.byte()) != 0:
            fid = fid + (b >> 4) if b >> 4 else self.zigzag()
            yield fid, b & 0x0F

    def list_header(self) -> tuple[int, int]:
        b = self.byte()
        return (self.varint() if b >> 4 == 15 else b >> 4), b & 0x0F

    def skip(self, kind: int, in_list: bool = False) -> None:
        if kind in (1, 2):  # booleans: in the field header, one byte in a list
            self.pos += in_list
        elif kind == 3:
            self.pos += 1
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            self.binary()
        elif kind in (9, 10):
            count, elem = self.list_header()
            for _ in range(count):
                self.skip(elem, in_list=True)
        elif kind == 11:
            count = self.varint()
            kv = self.byte() if count else 0
            for _ in range(count):
                self.skip(kv >> 4, in_list=True)
                self.skip(kv & 0x0F, in_list=True)
        elif kind == 12:
            for _, k in self.fields():
                self.skip(k)
        else:
            raise ValueError(f"unknown Thrift type {kind}")


def compact(table_dir: Path, min_shards: int = 2) -> Path | None:
    """Merge the first run of small shards in ``table_dir`` (up to ``MERGE_BYTES`` of them) into one
    when there are at least ``min_shards``. Streams row group by row group, so memory stays
    bounded by the largest row group. Unreadable shards are left alone. Returns the new shard."""
    small: list[Shard] = []
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
    pool = pa.default_memory_pool()
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, schema, **writer_options(schema)) as writer:
            for shard in small:
                # one row group at a time (a merged shard holds many); not pq.read_table: it imports pandas
                with pq.ParquetFile(shard.path) as f:
                    for group in range(f.num_row_groups):
                        table = f.read_row_group(group, use_threads=False)
                        columns = [
                            table.column(c.name) if c.name in table.column_names else pa.nulls(len(table), c.type)
                            for c in schema
                        ]
                        writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                        del table, columns
                        pool.release_unused()  # mimalloc otherwise keeps what each group needed
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    for shard in small:
        if shard.path != target:
            shard.path.unlink(missing_ok=True)
    return target
