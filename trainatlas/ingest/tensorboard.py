"""TensorBoard event files, read without tensorflow or tensorboard: TFRecord framing (length,
masked CRC-32C of the length, payload, CRC of the payload) and the few protobuf fields of
``Event`` (wall_time, step, summary) / ``Summary.Value`` (tag, simple_value, scalar tensor,
plugin name) that hold scalars. Images, histograms, text, graphs and hparams are skipped.

Steps are kept as written (they are global already). A record cut short by a writer that is
still writing ends the read; the next ingest continues from that record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from trainatlas.ingest.base import Parser, Row

_DTYPES = {1: ("<f", 4), 2: ("<d", 8), 3: ("<i", 4), 9: ("<q", 8), 19: ("<e", 2)}  # float, double, int32, int64, half
MAX_RECORD = 256 << 20


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def is_tfrecord_header(head: bytes) -> bool:
    """The first 12 bytes of a TFRecord file: a length and its masked CRC."""
    return len(head) >= 12 and struct.unpack("<I", head[8:12])[0] == masked_crc(head[:8])


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message; length-delimited values are bytes,
    fixed64/fixed32 values are their raw 8/4 bytes."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > n:
                raise ValueError("field runs past the message")
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if pos > n:
        raise ValueError("message cut short")


def _tensor_scalar(buf: bytes) -> float | None:
    """The one number of a scalar TensorProto (``float_val``/``double_val``/... or ``tensor_content``)."""
    dtype, content, vals, dims = 0, b"", [], 0
    for number, wire, value in fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 2 and wire == 2:
            dims = sum(1 for n, _, dim in fields(value) if n == 2 and _dim_size(dim) != 1)
        elif number == 4 and wire == 2:
            content = value
        elif number in (5, 6, 7, 10, 13) and not vals:
            vals.append((number, wire, value))
    if dtype not in _DTYPES or dims:
        return None
    fmt, size = _DTYPES[dtype]
    if len(content) == size:
        return float(struct.unpack(fmt, content)[0])
    if vals:
        number, wire, value = vals[0]
        if wire == 2:  # packed
            if number == 5 and len(value) >= 4:
                return float(struct.unpack("<f", value[:4])[0])
            if number == 6 and len(value) >= 8:
                return float(struct.unpack("<d", value[:8])[0])
            first, _ = _varint(value, 0) if value else (None, 0)
            return None if first is None else float(_signed(first))
        if wire == 5:
            return float(struct.unpack("<f", value)[0])
        if wire == 1:
            return float(struct.unpack("<d", value)[0])
        return float(_signed(value))
    return None


def _dim_size(dim: bytes) -> int:
    return next((v for n, w, v in fields(dim) if n == 1 and w == 0), 1)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class TensorBoardParser(Parser):
    format = "tensorboard"

    def rows(self, f: BinaryIO, final: bool) -> Iterator[Row]:
        offset = int(self.state.get("offset", 0))
        record = int(self.state.get("record", 0))
        plugins: dict[str, str] = self.state.setdefault("plugins", {})
        f.seek(offset)
        while True:
            header = f.read(12)
            if len(header) < 12:
                if header and final:
                    self.error(record + 1, f"truncated record header at byte {offset}")
                break
            length = struct.unpack("<Q", header[:8])[0]
            if struct.unpack("<I", header[8:12])[0] != masked_crc(header[:8]) or length > MAX_RECORD:
                self.error(record + 1, f"corrupt record header at byte {offset}; the rest of the file is skipped")
                self.state["offset"] = offset  # stays here: a rebuild is needed to get past it
                return
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) < length or len(footer) < 4:
                if final:
                    self.error(record + 1, f"truncated record at byte {offset} (file cut short)")
                break
            record += 1
            offset += 16 + length
            try:
                row = self._event(payload, record, plugins)
            except (ValueError, IndexError, struct.error) as exc:
                self.error(record, f"malformed event ({exc})")
                row = None
            self.state["offset"], self.state["record"] = offset, record
            if row is not None:
                yield row

    def _event(self, payload: bytes, record: int, plugins: dict[str, str]) -> Row | None:
        wall, step, summary = None, 0, None
        for number, wire, value in fields(payload):
            if number == 1 and wire == 1:
                wall = struct.unpack("<d", value)[0]
            elif number == 2 and wire == 0:
                step = _signed(value)
            elif number == 5 and wire == 2:
                summary = value
        if summary is None:
            return None
        values: dict[str, float] = {}
        for number, wire, value in fields(summary):
            if number == 1 and wire == 2:
                got = self._value(value, plugins)
                if got is not None:
                    values[got[0]] = got[1]
        return Row(step, values, record, None, wall) if values else None

    def _value(self, buf: bytes, plugins: dict[str, str]) -> tuple[str, float] | None:
        tag, simple, tensor, plugin = None, None, None, None
        for number, wire, value in fields(buf):
            if number == 1 and wire == 2:
                tag = value.decode("utf-8", "replace")
            elif number == 2 and wire == 5:
                simple = struct.unpack("<f", value)[0]
            elif number == 8 and wire == 2:
                tensor = value
            elif number == 9 and wire == 2:
                plugin = _plugin_name(value)
        if tag is None:
            return None
        if plugin is not None:
            plugins[tag] = plugin
        if simple is not None:
            return tag, float(simple)
        if tensor is not None and plugins.get(tag) == "scalars":
            number = _tensor_scalar(tensor)
            return None if number is None else (tag, number)
        return None


def _plugin_name(metadata: bytes) -> str | None:
    for number, wire, value in fields(metadata):
        if number == 1 and wire == 2:
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    return v.decode("utf-8", "replace")
    return None
