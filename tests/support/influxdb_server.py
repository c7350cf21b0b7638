"""A fake InfluxDB write API for the tests: ``/api/v2/write`` (2.x) and ``/write`` (1.x).

It parses line protocol as InfluxDB does (escaping of measurements, tag keys and values, field
keys; float, integer ``i``, unsigned ``u``, string and boolean fields; comments; optional
timestamps scaled by ``precision``), checks credentials and names the way the real server
answers, and keeps the type of every field: a point whose field has another type than before
is refused as a "field type conflict", the others of its batch are written (a partial write:
422 from 2.x, 400 from 1.x). A malformed line refuses the whole batch (400). Points are
appended to ``points`` in write order.

Sources: the InfluxDB docs "Line protocol" (v2 reference) and "Troubleshoot issues writing
data" (status codes and partial writes), and the 1.x HTTP API reference (``/write``).
"""

import base64
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from tests.support.http_server import FakeHttpServer, Request, Response

TOKEN = "influx-test-token-0123456789"
ORG, BUCKET = "home", "energy"
DATABASE, USER, PASSWORD = "emon", "gateway", "influx-v1-password"
PRECISIONS = {"ns": 1, "n": 1, "us": 10 ** 3, "u": 10 ** 3, "ms": 10 ** 6, "s": 10 ** 9,
              "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9}
V2_PRECISIONS = ("ns", "us", "ms", "s")


@dataclass(frozen=True)
class Point:
    measurement: str
    tags: Tuple[Tuple[str, str], ...]
    fields: Tuple[Tuple[str, object], ...]
    time_ns: int

    @property
    def tag(self) -> Dict[str, str]:
        return dict(self.tags)

    @property
    def field(self) -> Dict[str, object]:
        return dict(self.fields)

    @property
    def time(self) -> float:
        return self.time_ns / 1e9


class LineProtocolError(ValueError):
    """A line InfluxDB cannot parse: ``line`` is the line, the message says why."""

    def __init__(self, line: str, reason: str):
        super().__init__(f"unable to parse '{line}': {reason}")
        self.line = line


# -- line protocol --------------------------------------------------------------------------
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRUE = ("t", "T", "true", "True", "TRUE")
_FALSE = ("f", "F", "false", "False", "FALSE")


def split_lines(body: str) -> List[str]:
    """Lines separated by newlines, except a newline inside a quoted string field value."""
    lines, current, quoted, index = [], [], False, 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            current.append(body[index:index + 2])
            index += 2
            continue
        if char == '"' and (quoted or (current and current[-1].endswith("="))):
            quoted = not quoted
        if char == "\n" and not quoted:
            lines.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    lines.append("".join(current))
    return lines


def _scan(line: str, pos: int, stops: str, escapable: str) -> Tuple[str, int]:
    """Read up to an unescaped character of ``stops``; ``\\x`` for x in ``escapable`` is x
    (a backslash before anything else is a backslash)."""
    out = []
    while pos < len(line):
        char = line[pos]
        if char == "\\" and pos + 1 < len(line) and line[pos + 1] in escapable:
            out.append(line[pos + 1])
            pos += 2
            continue
        if char in stops:
            break
        out.append(char)
        pos += 1
    return "".join(out), pos


def _field_value(line: str, pos: int):
    if pos < len(line) and line[pos] == '"':
        out, pos = [], pos + 1
        while pos < len(line):
            char = line[pos]
            if char == "\\" and pos + 1 < len(line) and line[pos + 1] in '"\\':
                out.append(line[pos + 1])
                pos += 2
                continue
            if char == '"':
                return "".join(out), pos + 1
            out.append(char)
            pos += 1
        raise ValueError("unbalanced quotes")
    start = pos
    while pos < len(line) and line[pos] not in ", ":
        pos += 1
    raw = line[start:pos]
    if not raw:
        raise ValueError("missing field value")
    if raw[-1] == "i" and re.fullmatch(r"[-+]?\d+", raw[:-1]):
        value = int(raw[:-1])
        if not -2 ** 63 <= value < 2 ** 63:
            raise ValueError(f"unable to parse integer {raw[:-1]}: value out of range")
        return value, pos
    if raw[-1] == "u" and re.fullmatch(r"\d+", raw[:-1]):
        return int(raw[:-1]), pos
    if raw in _TRUE:
        return True, pos
    if raw in _FALSE:
        return False, pos
    if _FLOAT.fullmatch(raw):
        value = float(raw)
        if math.isfinite(value):
            return value, pos
    raise ValueError("invalid number")


def parse_line(line: str, precision: str = "ns", now_ns: Optional[int] = None) -> Point:
    """One point from one line (without its newline); raises LineProtocolError."""
    try:
        measurement, pos = _scan(line, 0, ", ", ", \\")
        if not measurement:
            raise ValueError("missing measurement")
        tags = []
        while pos < len(line) and line[pos] == ",":
            key, pos = _scan(line, pos + 1, "=, ", ",= \\")
            if not key or pos >= len(line) or line[pos] != "=":
                raise ValueError("missing tag key" if not key else "missing tag value")
            value, pos = _scan(line, pos + 1, ", =", ",= \\")
            if pos < len(line) and line[pos] == "=":
                raise ValueError("invalid tag format")
            if not value:
                raise ValueError("missing tag value")
            tags.append((key, value))
        if pos >= len(line) or line[pos] != " ":
            raise ValueError("missing fields")
        while pos < len(line) and line[pos] == " ":
            pos += 1
        fields = []
        while True:
            key, pos = _scan(line, pos, "=, ", ",= \\")
            if not key:
                raise ValueError("missing field key")
            if pos >= len(line) or line[pos] != "=":
                raise ValueError("missing field value")
            value, pos = _field_value(line, pos + 1)
            fields.append((key, value))
            if pos < len(line) and line[pos] == ",":
                pos += 1
                continue
            break
        timestamp = None
        if pos < len(line):
            rest = line[pos:].strip(" ")
            if line[pos] != " " or not re.fullmatch(r"-?\d+", rest):
                raise ValueError("bad timestamp" if line[pos] == " " else "invalid field format")
            timestamp = int(rest)
    except ValueError as exc:
        raise LineProtocolError(line, str(exc)) from None
    if timestamp is None:
        time_ns = now_ns if now_ns is not None else time.time_ns()
    else:
        time_ns = timestamp * PRECISIONS[precision]
    return Point(measurement, tuple(sorted(tags)), tuple(fields), time_ns)


def parse(body: str, precision: str = "ns") -> List[Point]:
    """Every point of a write request's body (blank lines and ``#`` comments skipped)."""
    now = time.time_ns()
    points = []
    for line in split_lines(body):
        line = line.lstrip(" \t").rstrip("\r")
        if line and not line.startswith("#"):
            points.append(parse_line(line, precision, now))
    return points


def field_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"   # (an unsigned is reported as integer here: never sent by the gateway)
    if isinstance(value, float):
        return "float"
    return "string"


# -- the server -----------------------------------------------------------------------------
class FakeInfluxDB(FakeHttpServer):
    """InfluxDB's write endpoints. ``max_body``: bytes above which a request gets 413."""

    name = "fake InfluxDB"

    def __init__(self, max_body: int = 0):
        super().__init__()
        self.points: List[Point] = []
        self.field_types: Dict[Tuple[str, str], str] = {}
        self.max_body = max_body

    def seed_field(self, measurement: str, field: str, kind: str) -> None:
        """Pretend an earlier write stored ``field`` with type ``kind`` (e.g. "string")."""
        self.field_types[(measurement, field)] = kind

    def wait_for_points(self, count: int) -> List[Point]:
        self.wait_until(lambda: len(self.points) >= count, f"{count} points")
        with self._cond:
            return list(self.points)

    # -- answers --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, b'{"code":"method not allowed","message":"method not allowed"}')
        if request.path == "/api/v2/write":
            return self._write_v2(request)
        if request.path == "/write":
            return self._write_v1(request)
        return Response(404, b'{"code":"not found","message":"path not found"}')

    def _write_v2(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != "Token " + TOKEN:
            return _v2(401, "unauthorized", "unauthorized access")
        query = request.query
        if not query.get("org") and not query.get("orgID"):
            return _v2(400, "invalid", "Please provide either orgID or org")
        if query.get("org") != ORG:
            return _v2(404, "not found", f'organization name "{query.get("org")}" not found')
        if not query.get("bucket"):
            return _v2(400, "invalid", "bucket not found")   # what 2.x answers without one
        if query["bucket"] != BUCKET:
            return _v2(404, "not found", f'bucket "{query["bucket"]}" not found')
        precision = query.get("precision", "ns")
        if precision not in V2_PRECISIONS:
            return _v2(400, "invalid", f'invalid precision "{precision}"')
        if self.max_body and len(request.body) > self.max_body:
            return _v2(413, "request too large", "unable to read data: points batch is too large")
        try:
            points = parse(request.body.decode("utf-8"), precision)
        except (LineProtocolError, UnicodeDecodeError) as exc:
            return _v2(400, "invalid", str(exc))
        problem = self._store(points, v1=False)
        if problem:
            return _v2(422, "unprocessable entity", "failure writing points to database: " + problem)
        return Response(204)

    def _write_v1(self, request: Request) -> Response:
        query = request.query
        user, password = query.get("u"), query.get("p")
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        if (user, password) != (USER, PASSWORD):
            return _v1(401, "authorization failed")
        if not query.get("db"):
            return _v1(400, "database is required")
        if query["db"] != DATABASE:
            return _v1(404, f'database not found: "{query["db"]}"')
        precision = query.get("precision", "n")
        if precision not in PRECISIONS:
            return _v1(400, f'invalid precision "{precision}"')
        if self.max_body and len(request.body) > self.max_body:
            return _v1(413, "Request Entity Too Large")
        try:
            points = parse(request.body.decode("utf-8"), precision)
        except (LineProtocolError, UnicodeDecodeError) as exc:
            return _v1(400, str(exc))
        problem = self._store(points, v1=True)
        if problem:
            return _v1(400, problem)
        return Response(204)

    def _store(self, points: List[Point], v1: bool) -> Optional[str]:
        """Write the points that fit (caller holds the lock); the partial-write message or None."""
        dropped, first = 0, None
        for point in points:
            problem = self._refusal(point, v1)
            if problem:
                dropped += 1
                first = first or problem
                continue
            for key, value in point.fields:
                self.field_types.setdefault((point.measurement, key), field_type(value))
            self.points.append(point)
        self.notify()
        return f"partial write: {first} dropped={dropped}" if dropped else None

    def _refusal(self, point: Point, v1: bool) -> Optional[str]:
        if v1 and ("time" in point.field or "time" in point.tag):
            return f'invalid field name: input field "time" on measurement "{point.measurement}" is invalid'
        for key, value in point.fields:
            known = self.field_types.get((point.measurement, key))
            if known and known != field_type(value):
                return (f'field type conflict: input field "{key}" on measurement '
                        f'"{point.measurement}" is type {field_type(value)}, already exists as type {known}')
        return None


def _v2(status: int, code: str, message: str) -> Response:
    return Response(status, json.dumps({"code": code, "message": message}).encode())


def _v1(status: int, error: str) -> Response:
    return Response(status, json.dumps({"error": error}).encode())
