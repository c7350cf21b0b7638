"""The spool's file format: segment files of checksummed frames of readings.

A *segment* is a file named after the sequence number of its first reading
(``00000000000000000042.seg``) holding *frames* back to back. A frame holds one or more
consecutive readings::

    magic "OGF1" | payload length u32 | CRC-32 u32 | first seq u64 | count u16 | flags u8 | payload

The CRC covers everything after it. The payload is one JSON array per reading, newline
separated, zlib-compressed when ``flags`` bit 0 is set. Every frame starts with the magic, so
a reader that meets a damaged frame can find the next good one. A frame holds at most
``FRAME_READINGS`` readings, so one damaged byte costs at most that many (files written before
this bound, with larger frames, read the same way).
"""

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from gateway.formats import compact_json
from gateway.frame import Frame

MAGIC = b"OGF1"
HEADER = struct.Struct("<4sIIQHB")
CHECKED = struct.Struct("<QHB")   # the header fields the CRC covers, before the payload
FLAG_ZLIB = 1
MAX_PAYLOAD = 16 * 1024 * 1024
FRAME_READINGS = 256   # most readings per frame: what one damaged byte can cost
COMPRESS_FROM = 8      # frames of fewer readings gain too little from zlib
SUFFIX = ".seg"


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def segment_seq(name: str) -> Optional[int]:
    """The first sequence number a segment name stands for, or None for other files."""
    stem = name[:-len(SUFFIX)]
    if name.endswith(SUFFIX) and len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


@dataclass
class Entry:
    """Where one frame sits in its segment."""
    first_seq: int
    count: int
    offset: int
    length: int


# -- readings <-> bytes -------------------------------------------------------------------
def encode_reading(frame: Frame) -> bytes:
    return compact_json([frame.time, frame.node, frame.values, frame.names, frame.rssi,
                          frame.source]).encode()


def decode_reading(line: bytes) -> Frame:
    return _frame(json.loads(line))


def decode_readings(lines: List[bytes]) -> List[Frame]:
    """Many readings at once: one JSON parse for all of them (much faster than one each).
    Raises ValueError or TypeError if any of them is damaged."""
    return [_frame(fields) for fields in json.loads(b"[" + b",".join(lines) + b"]")]


def _frame(fields) -> Frame:
    time, node, values, names, rssi, source = fields
    return Frame(node, tuple(values), time, tuple(names) if names else None, rssi, source)


def encode_frame(first_seq: int, readings: List[bytes], compress: bool) -> bytes:
    """One frame of at most ``FRAME_READINGS`` consecutive readings."""
    if not 0 < len(readings) <= FRAME_READINGS:
        raise ValueError(f"a frame holds 1 to {FRAME_READINGS} readings, not {len(readings)}")
    payload = b"\n".join(readings)
    flags = 0
    if compress:
        payload = zlib.compress(payload, 6)
        flags |= FLAG_ZLIB
    checked = CHECKED.pack(first_seq, len(readings), flags)
    crc = zlib.crc32(payload, zlib.crc32(checked))
    return HEADER.pack(MAGIC, len(payload), crc, first_seq, len(readings), flags) + payload


def encode_frames(first_seq: int, readings: List[bytes], compress: bool) -> Iterator[Tuple[Entry, bytes]]:
    """Consecutive readings as frames of at most ``FRAME_READINGS``: ``(entry, bytes)`` each,
    the entry's offset left at 0 for the writer to set. Compressed if ``compress`` and the
    frame holds at least ``COMPRESS_FROM`` readings."""
    for start in range(0, len(readings), FRAME_READINGS):
        chunk = readings[start:start + FRAME_READINGS]
        data = encode_frame(first_seq + start, chunk, compress and len(chunk) >= COMPRESS_FROM)
        yield Entry(first_seq + start, len(chunk), 0, len(data)), data


def decode_payload(flags: int, payload: bytes) -> List[bytes]:
    if flags & FLAG_ZLIB:
        payload = zlib.decompress(payload)
    return payload.split(b"\n")


@dataclass
class ScanResult:
    entries: List[Entry] = field(default_factory=list)
    good_end: int = 0          # offset just past the last good frame
    damaged_bytes: int = 0     # bytes skipped between good frames, or after the last one


def parse_header(data: bytes) -> Optional[Tuple[int, int, int, int, int]]:
    """``(payload_len, crc, first_seq, count, flags)`` of a plausible header, else None."""
    if len(data) < HEADER.size:
        return None
    magic, length, crc, first_seq, count, flags = HEADER.unpack_from(data)
    if magic != MAGIC or length > MAX_PAYLOAD or count == 0 or flags & ~FLAG_ZLIB:
        return None
    return length, crc, first_seq, count, flags


def frame_ok(header, payload: bytes) -> bool:
    length, crc, first_seq, count, flags = header
    if len(payload) != length:
        return False
    return zlib.crc32(payload, zlib.crc32(CHECKED.pack(first_seq, count, flags))) == crc


def scan(data: bytes) -> ScanResult:
    """Find every intact frame in a segment's bytes, skipping damage.

    Frames carry increasing sequence numbers, with gaps where readings were delivered before
    they needed saving; readings lost to damage are noticed by the reader, as sequence numbers
    it expected and found nowhere.
    """
    result = ScanResult()
    offset = 0
    expected: Optional[int] = None
    while offset < len(data):
        header = parse_header(data[offset:offset + HEADER.size])
        if header is not None:
            end = offset + HEADER.size + header[0]
            payload = data[offset + HEADER.size:end]
            if frame_ok(header, payload) and (expected is None or header[2] >= expected):
                first_seq, count = header[2], header[3]
                result.entries.append(Entry(first_seq, count, offset, end - offset))
                result.good_end = end
                expected = first_seq + count
                offset = end
                continue
        # Damage: look for the next frame start.
        found = data.find(MAGIC, offset + 1)
        skip_to = found if found >= 0 else len(data)
        result.damaged_bytes += skip_to - offset
        offset = skip_to
    return result


def iter_readings(data: bytes, entry: Entry) -> Iterator[Tuple[int, bytes]]:
    """``(seq, encoded reading)`` for each reading of the frame at ``entry`` in ``data``."""
    header = parse_header(data)
    payload = data[HEADER.size:HEADER.size + header[0]]
    for index, line in enumerate(decode_payload(header[4], payload)):
        yield entry.first_seq + index, line
