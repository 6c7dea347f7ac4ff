"""Arrow columns built straight from typed buffers.

Any conversion of Python objects by pyarrow (``pa.array(list)``, ``pa.table(dict)``, even
``pa.scalar``) imports pandas on its first call, which adds about 50 MB to the training process.
Building the buffers ourselves (``array``/numpy, then ``Array.from_buffers``) avoids that import and
the Python-object copy of every column.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa


def _validity(values: Sequence[Any]) -> tuple[Any, list[int]]:
    """The validity bitmap (None when nothing is missing) and the positions of the missing values."""
    if None not in values:
        return None, []
    missing = [i for i, v in enumerate(values) if v is None]
    valid = np.ones(len(values), dtype=bool)
    valid[missing] = False
    return pa.py_buffer(np.packbits(valid, bitorder="little")), missing


def f64(values: Sequence[float | None]) -> pa.Array:
    """A double column; None becomes NULL."""
    bitmap, missing = _validity(values)
    filled = [0.0 if v is None else v for v in values] if missing else cast("Sequence[float]", values)
    return pa.Array.from_buffers(pa.float64(), len(values), [bitmap, pa.py_buffer(array("d", filled))])


def ints(values: Sequence[int | None], typecode: str = "q") -> pa.Array:
    """An int64 (``q``) or int32 (``i``) column; None becomes NULL."""
    bitmap, missing = _validity(values)
    if missing:
        values = [0 if v is None else v for v in values]
    kind = pa.int64() if typecode == "q" else pa.int32()
    return pa.Array.from_buffers(kind, len(values), [bitmap, pa.py_buffer(np.asarray(values, dtype=typecode))])


def bools(values: Sequence[bool | None]) -> pa.Array:
    bitmap, missing = _validity(values)
    bits = np.packbits(np.array([bool(v) for v in values], dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [bitmap, pa.py_buffer(bits)])


def strings(values: Sequence[str | None]) -> pa.Array:
    """A string column; values are usually a few distinct keys, so each is encoded once."""
    bitmap, _ = _validity(values)
    encoded: dict[str | None, bytes] = {v: v.encode() for v in set(values) if v is not None}
    encoded[None] = b""
    parts = list(map(encoded.__getitem__, values))
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)  # a flush is far below 2 GB of text
    np.cumsum(np.fromiter(map(len, parts), dtype=np.int32, count=len(parts)), out=offsets[1:])
    data = pa.py_buffer(b"".join(parts))
    return pa.Array.from_buffers(pa.string(), len(parts), [bitmap, pa.py_buffer(offsets), data])


def repeated(value: str, n: int) -> pa.Array:
    """``value`` n times (the run id of every row), stored once."""
    return coded([value], np.zeros(n, dtype=np.int32))


def coded(names: Sequence[str], codes: np.ndarray) -> pa.Array:
    """``names[code]`` for each code, as a dictionary-encoded string column: each name is stored
    once, and Parquet writes it as the dictionary it already is (read back, it is a plain string
    column). Not ``Array.take``: that imports ``pyarrow.compute``, 10 MB more in the training process."""
    return pa.DictionaryArray.from_arrays(from_numpy(codes.astype(np.int32, copy=False), pa.int32()), strings(names))


def table(columns: dict[str, pa.Array], schema: pa.Schema) -> pa.Table:
    """The columns in the order of ``schema``; string columns may be dictionary-encoded."""
    return pa.Table.from_arrays([columns[f.name] for f in schema], names=schema.names)


def from_numpy(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    """A column without NULLs over a numpy array of the matching dtype (no copy)."""
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(np.ascontiguousarray(values))])
