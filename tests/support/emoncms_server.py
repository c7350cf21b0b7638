"""A fake emoncms 11.16.8 input API, for the OEM Gateway tests and benchmarks.

It answers the way the real server answered in /work/shared/research/emoncms-api.md
(emoncms 11.16.8, Apache + mod_php 8.2, MariaDB strict mode, redis off, ``display_errors`` on);
section numbers in the docstrings below ("doc §2") point into that document. Where the document
is silent the PHP source it names was followed, and the choice is stated in the docstring.

Standard library only, so it also runs on its own::

    python -m tests.support.emoncms_server --port 8088        # or: python tests/support/emoncms_server.py

Use in tests::

    fake = FakeEmoncms().start()
    ...  # point the gateway at fake.url with WRITE_KEY
    rows = fake.wait_for_rows(3)
    fake.stop()

Every value emoncms writes (``input/post`` input, ``input/bulk`` row value) is appended to
``rows`` as a :class:`Row`, in the order written. The real server keeps only the last value per
input; ``input/get`` here answers from the last values the same way.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import signal
import socket
import sys
import threading
import time
import traceback
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["WRITE_KEY", "READ_KEY", "VERSION", "MODES", "Row", "SeenRequest", "FakeEmoncms", "main"]

WRITE_KEY = "0123456789abcdef0123456789abcdef"
READ_KEY = "fedcba9876543210fedcba9876543210"
VERSION = "11.16.8"

#: Server behaviours selectable with :meth:`FakeEmoncms.set_mode`.
MODES = ("ok", "error500", "hang", "refuse", "garbage", "reset", "db_down")
#: Modes :meth:`FakeEmoncms.fail_next` accepts.
FAIL_MODES = ("error500", "garbage", "reset", "hang", "db_down")

MAX_REQUEST_LINE = 8190             # Apache LimitRequestLine (doc §2, §3: longer URL -> 414)
POST_MAX_SIZE = 8 * 1024 * 1024     # PHP post_max_size = 8M: a bigger body is dropped (doc §3)
MYSQL_INT_MIN, MYSQL_INT_MAX = -2 ** 31, 2 ** 31 - 1   # input.time is INT (doc §3)
MYSQL_FLOAT_MAX = 3.4028234663852886e38   # input.value is FLOAT (doc §3, §7): above FLT_MAX -> crash
PHP_INT_MIN, PHP_INT_MAX = -2 ** 63, 2 ** 63 - 1

TEXT = "text/plain;charset=UTF-8"   # header() 'text/plain' + PHP default_charset
HTML = "text/html; charset=UTF-8"   # PHP's default Content-Type (401, fatal errors)
JSON = "application/json"           # read endpoints (doc §4)
GARBAGE = b"<html>garbage</html>"

# Where the PHP error pages say the code lives. The line numbers are illustrative (only
# input_methods.php:292 is quoted in the doc); nothing should depend on them.
_EMONCMS_ROOT = "/var/www/emoncms"
_INDEX_PHP = _EMONCMS_ROOT + "/index.php"
_METHODS_PHP = _EMONCMS_ROOT + "/Modules/input/input_methods.php"
_MODEL_PHP = _EMONCMS_ROOT + "/Modules/input/input_model.php"
_STRLEN_LINE, _HEX2BIN_LINE, _COUNT_LINE, _SET_TIMEVALUE_LINE = 292, 225, 237, 318

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            414: "Request-URI Too Long", 500: "Internal Server Error"}


# ---------------------------------------------------------------------------------------------
# Public data types
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One input value as emoncms wrote it.

    ``node``: the node id after emoncms' sanitising ("0" when missing); ``name``: the input name
    ("1", "2", ... for positional values, otherwise the key, sanitised); ``value``: the float
    emoncms computed (PHP ``(float)`` cast). It is the exact double; MySQL would keep only a
    single-precision FLOAT, which ``input/get`` shows (doc §5). ``time``: unix seconds (int).
    """

    __slots__ = ("node", "name", "value", "time")   # benchmarks keep millions of these

    node: str
    name: str
    value: float
    time: int


class SeenRequest(NamedTuple):
    """One request the fake received: method, URL path (no query string), status answered.

    ``status`` is None when no HTTP answer was given (modes "reset", "hang", "refuse").
    """

    method: str
    path: str
    status: Optional[int]


# ---------------------------------------------------------------------------------------------
# PHP value semantics used by emoncms' input code
# ---------------------------------------------------------------------------------------------

_PHP_SPACE = " \t\n\r\v\f"
_NUMERIC_PREFIX = re.compile(r"[ \t\n\r\v\f]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_INT_LITERAL = re.compile(r"[+-]?[0-9]+")
_NAME_STRIP = re.compile(r"[^\w\s.\-]")        # preg_replace('/[^\p{N}\p{L}_\s\-.]/u', '', ...)
_RELAXED_STRIP = re.compile(r"[^\w\s.:,\-]")   # preg_replace('/[^\p{N}\p{L}_\s-.:,]/u', '', ...)
_ROUTE_STRIP = re.compile(r"[^./_A-Za-z0-9-]")  # route.php
_APIKEY = re.compile(r"[0-9a-fA-F]{32}")


def php_is_numeric(text: str) -> bool:
    """PHP 8 ``is_numeric()`` on a string: decimal/exponent notation, optional sign, surrounding
    whitespace; no hex, no INF/NAN (doc §3: ``NAN,INF``, ``0x1A`` are not numeric)."""
    match = _NUMERIC_PREFIX.match(text)
    return bool(match) and text[match.end():].strip(_PHP_SPACE) == ""


def php_float(value) -> float:
    """PHP ``(float)`` cast of a decoded JSON or form value: ``"abc"``/``null``/``""`` -> 0,
    ``true`` -> 1, ``"12.5"`` -> 12.5, leading-numeric strings use their numeric prefix
    (doc §1 fulljson, §2 bulk values)."""
    if isinstance(value, float):
        return value
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    if isinstance(value, str):
        match = _NUMERIC_PREFIX.match(value)
        return float(match.group(1)) if match else 0.0
    if value is None:
        return 0.0
    return 1.0 if value else 0.0  # arrays/objects: (float) [] is 0, anything else 1


def _float_to_int(number: float, saturate: bool) -> int:
    """PHP float->int: NaN/INF -> 0; out of int64 range -> 0 (cast) or clamped (string cast)."""
    if not math.isfinite(number):
        return 0
    if PHP_INT_MIN <= number < 2.0 ** 63:
        return int(number)
    if saturate:
        return PHP_INT_MAX if number > 0 else PHP_INT_MIN
    return 0


def php_int(value) -> int:
    """PHP ``(int)`` cast: ``"x"`` -> 0, ``" 5"`` -> 5, ``"1700000000.7"`` -> 1700000000,
    ``"1e3"`` -> 1000 (doc §1 ``time``, §2 row times and ``sentat``/``offset``/``time``)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if PHP_INT_MIN <= value <= PHP_INT_MAX else 0  # json_decode made it a float
    if isinstance(value, float):
        return _float_to_int(value, saturate=False)
    if isinstance(value, str):
        match = _NUMERIC_PREFIX.match(value)
        if not match:
            return 0
        literal = match.group(1)
        if _INT_LITERAL.fullmatch(literal):
            return max(PHP_INT_MIN, min(PHP_INT_MAX, int(literal)))
        return _float_to_int(float(literal), saturate=True)
    if value is None:
        return 0
    return 1 if value else 0


def php_truthy(value) -> bool:
    """PHP truthiness of a string: ``""`` and ``"0"`` are false (route segments, apikey)."""
    return value not in (None, "", "0", False)


def _php_float_to_string(number: float) -> str:
    """``(string)`` of a float, PHP 8 with precision=14: ``5.0`` -> ``5``, ``1e20`` -> ``1.0E+20``."""
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    text = "%.14G" % number
    if "E" in text:
        mantissa, exponent = text.split("E")
        if "." not in mantissa:
            mantissa += ".0"
        text = "%sE%+d" % (mantissa, int(exponent))
    return text


def php_string(value) -> str:
    """PHP string conversion of a decoded JSON scalar (bulk node ids: ``5`` -> ``"5"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _php_float_to_string(value)
    return ""  # null


def sanitise_name(text: str) -> str:
    """emoncms' node/input name filter: keep letters, digits, ``_``, ``-``, ``.`` and whitespace
    (doc §1: ``my node!@`` -> ``my node``, ``"p w/r"`` -> ``p wr``, ``"a:b"`` -> ``ab``)."""
    return _NAME_STRIP.sub("", text)


def sanitise_node(value) -> str:
    """Node id as emoncms stores it: sanitised string, ``"0"`` when empty (doc §1)."""
    return sanitise_name(php_string(value)) or "0"


def _reject_constant(name):
    raise ValueError("PHP json_decode() does not accept " + name)


def php_json_decode(text):
    """PHP ``json_decode()``: the decoded value, or None on a syntax error (PHP returns null).

    NaN/Infinity literals are rejected as PHP does; big numbers become floats (1e400 -> INF)."""
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


def php_strtotime(text: str, now: int) -> Optional[int]:
    """The part of PHP ``strtotime()`` the gateway could use: ISO 8601 / ``YYYY-MM-DD HH:MM:SS``
    (UTC when no zone is given), ``@<seconds>`` and ``now``. None where PHP returns false or the
    form is not supported here (doc §1: an unparsable ``time`` falls back to server time)."""
    text = text.strip()
    if text.lower() == "now":
        return now
    if text.startswith("@") and _INT_LITERAL.fullmatch(text[1:]):
        return int(text[1:])
    match = _ISO_8601.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        stamp = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                         int(second or 0), tzinfo=timezone.utc)
    except ValueError:
        return None
    if zone and zone.upper() not in ("Z", "UTC", "GMT"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        stamp -= sign * offset
    return int(stamp.timestamp())


_ISO_8601 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?)?"
    r"\s*(Z|z|UTC|GMT|[+-][0-9]{2}(?::?[0-9]{2})?)?")


def parse_time(value, now: int) -> int:
    """``InputMethods::parse_time`` (doc §1): a numeric value is cast to int (fractions
    truncated), a string goes through ``strtotime()``, anything else -> server time."""
    if isinstance(value, bool) or value is None:
        return now
    if isinstance(value, (int, float)):
        return php_int(value)
    if isinstance(value, str):
        if php_is_numeric(value):
            return php_int(value)
        parsed = php_strtotime(value, now)
        return now if parsed is None else parsed
    return now


def php_json_encode(value) -> str:
    """PHP ``json_encode()``: compact, ``/`` escaped, floats without ``.0`` (``7.0`` -> ``7``),
    and an array whose keys are exactly 0..n-1 becomes a JSON list (so ``input/get`` with only
    node "0" answers ``[...]``, as PHP would); an empty array is ``[]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _php_json_float(value)
    if isinstance(value, str):
        return json.dumps(value).replace("/", "\\/")
    if isinstance(value, dict):
        keys = list(value)
        if all(key == str(index) for index, key in enumerate(keys)):
            value = [value[key] for key in keys]
        else:
            return "{" + ",".join(php_json_encode(str(key)) + ":" + php_json_encode(item)
                                  for key, item in value.items()) + "}"
    return "[" + ",".join(php_json_encode(item) for item in value) + "]"


def _php_json_float(number: float) -> str:
    """A float as PHP 8 ``json_encode`` writes it (serialize_precision = -1)."""
    if number.is_integer() and abs(number) < 1e17:
        return str(int(number))
    text = repr(number)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = "%se%+d" % (mantissa, int(exponent))
    return text


def mysql_float(number: Optional[float]) -> Optional[float]:
    """What a MySQL FLOAT column gives back: 6 significant digits (doc §5: 3.14159265 -> 3.14159)."""
    return None if number is None else float("%.6g" % number)


# ---------------------------------------------------------------------------------------------
# emoncms outcomes
# ---------------------------------------------------------------------------------------------

class _ApiError(Exception):
    """A message returned by ``InputMethods``: the controller wraps it as
    ``{"success": false, "message": "..."}`` (double quotes -> single quotes), HTTP 200 (doc §3).
    ``prefix`` is PHP warning output printed before it (doc §2, ``c=1&data=zz``)."""

    def __init__(self, message: str, prefix: str = ""):
        super().__init__(message)
        self.message = message
        self.prefix = prefix

    def body(self) -> bytes:
        text = '{"success": false, "message": "%s"}' % self.message.replace('"', "'")
        return (self.prefix + text).encode("utf-8")


class _PhpFatal(Exception):
    """An uncaught PHP error: with ``display_errors`` on (the emoncms default) the answer is
    HTTP 200 with PHP's HTML "Fatal error" page (doc §2 and §3)."""

    def __init__(self, uncaught: str, file: str, line: int):
        super().__init__(uncaught)
        self.uncaught, self.file, self.line = uncaught, file, line

    def page(self) -> bytes:
        return ("<br />\n<b>Fatal error</b>:  Uncaught %s in %s:%d\nStack trace:\n#0 {main}\n"
                "  thrown in <b>%s</b> on line <b>%d</b><br />\n"
                % (self.uncaught.replace(">", "&gt;"), self.file, self.line, self.file, self.line)
                ).encode("utf-8")


def _php_type(value) -> str:
    """PHP's name of a decoded JSON value's type, as TypeError messages print it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "string", list: "array", dict: "stdClass"}[type(value)]


def _count_error(value) -> _PhpFatal:
    """``count()`` of something that is not an array (bulk data or row not a JSON array)."""
    return _PhpFatal("TypeError: count(): Argument #1 ($value) must be of type Countable|array, %s given"
                     % _php_type(value), _METHODS_PHP, _COUNT_LINE)


def _out_of_range(column: str) -> _PhpFatal:
    """MariaDB strict mode refusing a value for ``input.time``/``input.value`` (doc §3)."""
    return _PhpFatal("mysqli_sql_exception: Out of range value for column '%s' at row 1" % column,
                     _MODEL_PHP, _SET_TIMEVALUE_LINE)


def _php_warning(message: str, file: str, line: int) -> str:
    return ("<br />\n<b>Warning</b>:  %s in <b>%s</b> on line <b>%d</b><br />\n" % (message, file, line))


class _Response(NamedTuple):
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: Tuple[Tuple[str, str], ...] = ()
    close: bool = False


_EMPTY_200 = _Response(200, b"")       # read key / no key on post & bulk (doc §3)
_FALSE_JSON = _Response(200, b"false", JSON)
_UNAUTHORIZED = _Response(401, b"Invalid API key", HTML, (
    ("WWW-Authenticate",
     'Bearer realm="API KEY", error="invalid_apikey", error_description="Invalid API key"'),))
_NOT_FOUND = _Response(404, b"<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n"
                            b"<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n"
                            b"<p>The requested URL was not found on this server.</p>\n</body></html>\n",
                       HTML)
_URI_TOO_LONG = _Response(414, b"<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n"
                               b"<title>414 Request-URI Too Long</title>\n</head><body>\n"
                               b"<h1>Request-URI Too Long</h1>\n<p>The requested URL's length exceeds "
                               b"the capacity\nlimit for this server.<br />\n</p>\n</body></html>\n",
                          HTML, close=True)
_ERROR_500 = _Response(500, b"", HTML)
# The database refusing emoncms' login (doc §7 "Database down"): index.php's connect throws
# before any routing, so every request, /version included, gets this page.
_DB_DOWN = _Response(200, _PhpFatal("mysqli_sql_exception: Access denied for user 'emoncms'@'localhost' "
                                    "(using password: YES)", _INDEX_PHP, 74).page(), HTML)
_GARBAGE = _Response(200, GARBAGE, HTML)
_BAD_REQUEST = _Response(400, b"Bad Request", HTML, close=True)


# ---------------------------------------------------------------------------------------------
# The input table
# ---------------------------------------------------------------------------------------------

class _InputStore:
    """One emoncms user's inputs (redis off) plus the log of every value written.

    All state is guarded by ``cond``; writers notify it so tests can wait without sleeping.
    """

    def __init__(self, max_nodes: int, on_stored: Optional[Callable[[List[Row]], None]] = None):
        self.cond = threading.Condition()
        self.max_nodes = max_nodes
        self.on_stored = on_stored
        self.rows: List[Row] = []
        # node -> name -> [time, value]; both None for an input created without a value
        self.inputs: Dict[str, Dict[str, list]] = {}
        # (node, name) -> the value of the Accumulator feed its process list writes to
        self.accumulators: Dict[Tuple[str, str], float] = {}

    def process_node(self, node: str, time_: int, inputs: Dict[str, float]) -> None:
        """``InputMethods::process_node``: refuse a new node beyond ``max_nodes`` (doc §3, §6),
        then create each input and write its time and value, in order. A value MySQL refuses
        raises :class:`_PhpFatal` after the input was created; earlier values stay written.
        Only once every value of the row is written do the process lists of the inputs that
        existed before the row run (``$tmp`` in the PHP): a refused or crashed row runs none,
        and every row stored before it has run its processes (doc §7)."""
        with self.cond:
            if node not in self.inputs and len(self.inputs) >= self.max_nodes:
                raise _ApiError("Error: Reached the maximal allowed number of different NodeIds, "
                                "limit is %d. Node '%s' was ignored." % (self.max_nodes, node))
            if not inputs:
                return
            node_inputs = self.inputs.setdefault(node, {})
            processing = []
            stored_before = len(self.rows)
            try:
                for name, value in inputs.items():
                    name = sanitise_name(name)
                    existed = name in node_inputs
                    slot = node_inputs.setdefault(name, [None, None])   # create_input()
                    if not MYSQL_INT_MIN <= time_ <= MYSQL_INT_MAX:      # set_timevalue()
                        raise _out_of_range("time")
                    if not abs(value) <= MYSQL_FLOAT_MAX:
                        raise _out_of_range("value")
                    slot[0], slot[1] = time_, value
                    self.rows.append(Row(node, name, value, time_))
                    if existed and (node, name) in self.accumulators:
                        processing.append((node, name, value))
                for key_node, key_name, value in processing:   # process__accumulator
                    self.accumulators[(key_node, key_name)] += value
            finally:
                if self.on_stored is not None and len(self.rows) > stored_before:
                    self.on_stored(self.rows[stored_before:])
                self.cond.notify_all()

    def add_accumulator(self, node: str, name: str) -> None:
        """Give input node/name the process list ``process__accumulator`` to a new feed; like
        emoncms, the input must exist first (here it is created without a value if missing)."""
        with self.cond:
            self.inputs.setdefault(node, {}).setdefault(name, [None, None])
            self.accumulators[(node, name)] = 0.0

    def clear(self) -> int:
        """Forget every input and row (``input/clean``); returns how many inputs there were."""
        with self.cond:
            count = sum(len(names) for names in self.inputs.values())
            self.inputs.clear()
            self.rows.clear()
            self.accumulators.clear()
            self.cond.notify_all()
            return count

    def snapshot(self) -> Dict[str, Dict[str, dict]]:
        """``Input::get_inputs_v2``: node -> name -> time/value/processList, as MySQL returns them."""
        with self.cond:
            return {node: {name: {"time": slot[0], "value": mysql_float(slot[1]), "processList": ""}
                           for name, slot in names.items()}
                    for node, names in self.inputs.items()}


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

class _Request(NamedTuple):
    """What PHP would see of one HTTP request."""

    method: str
    request_line: str
    path: str
    query: Dict[str, str]    # $_GET
    form: Dict[str, str]     # $_POST
    body: bytes              # php://input
    authorization: Optional[str]

    @property
    def params(self) -> Dict[str, str]:
        """``param.php``: GET then POST merged, the form body wins (doc §1)."""
        if not self.form:
            return self.query
        merged = dict(self.query)
        merged.update(self.form)
        return merged


def _parse_route(path: str) -> Optional[List[str]]:
    """``route.php`` under any prefix: [controller, action, subaction, subaction2] starting at the
    first ``input``/``version`` segment. Characters other than ``A-Za-z0-9._/-`` are dropped and
    the last segment loses everything from its first ``.`` (the format: ``post.json`` -> ``post``,
    ``input/post/emon.tx`` -> node ``emon``)."""
    args = _ROUTE_STRIP.sub("", unquote(path)).strip("/").split("/")
    args[-1] = args[-1].split(".")[0]
    for index, arg in enumerate(args):
        if arg in ("input", "version"):
            return (args[index:] + ["", "", ""])[:4]
    return None


def _form_params(content_type: str, body: bytes) -> Dict[str, str]:
    """``$_POST``: only an ``application/x-www-form-urlencoded`` body is parsed; a JSON body is
    ignored (doc §1); a body over ``post_max_size`` never gets here (doc §3)."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


# ---------------------------------------------------------------------------------------------
# input/post
# ---------------------------------------------------------------------------------------------

_MISSING = object()


def parse_fulljson(datain: str, time_param: bool) -> Tuple[Dict[str, float], object]:
    """``fulljson=`` (doc §1): real JSON, depth <= 2, object or array (an array names its values
    0, 1, ... zero-based); values cast with :func:`php_float`. Unless a ``time`` parameter is
    present, a key equal to "time" in any case gives the timestamp (the last such key wins), and
    the key spelled exactly ``time`` is not stored. Returns (inputs, time value or _MISSING)."""
    decoded = php_json_decode(datain)
    if isinstance(decoded, list):
        items = [(str(index), value) for index, value in enumerate(decoded)]
    elif isinstance(decoded, dict):
        items = list(decoded.items())
    else:
        raise _ApiError("Input in not a valid JSON object")
    if any(isinstance(value, (list, dict)) for _, value in items):
        raise _ApiError("Input in not a valid JSON object")   # nested deeper than 2
    time_value = _MISSING
    if not time_param:
        for key, value in items:
            if key.lower() == "time":
                time_value = value
        items = [(key, value) for key, value in items if key != "time"]
    inputs = {}
    for key, value in items:
        inputs[key] = php_float(value)
    return inputs, time_value


def parse_relaxed(datain: str) -> Dict[str, float]:
    """``json=``/``csv=``/``data=`` (doc §1): strip all but letters, digits, ``_ - . : ,`` and
    whitespace, split on ``,``; ``k:v`` gives input k, a bare value the next of 1, 2, 3...;
    a value must be ``is_numeric`` or ``null`` (-> 0); any bad element rejects the request."""
    inputs: Dict[str, float] = {}
    position = 0
    for element in _RELAXED_STRIP.sub("", datain).split(","):
        pair = element.split(":")
        if len(pair) > 1:
            key, value = pair[0], pair[1]
            if key == "":
                raise _ApiError("Format error, json key missing or invalid character")
            if not php_is_numeric(value) and value != "null":
                raise _ApiError("Format error, json value is not numeric")
            inputs[key] = php_float(value)
        else:
            if not php_is_numeric(element) and element != "null":
                raise _ApiError("Format error: csv value is not numeric")
            position += 1
            inputs[str(position)] = php_float(element)
    return inputs


# ---------------------------------------------------------------------------------------------
# input/bulk
# ---------------------------------------------------------------------------------------------

def _gzuncompress(data: bytes) -> Optional[str]:
    """PHP ``@gzuncompress()`` then the string json_decode sees; None when it fails."""
    try:
        return zlib.decompress(data).decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        return None


def _hex2bin(data: Optional[str]) -> Tuple[bytes, str]:
    """PHP ``hex2bin()``: (the bytes, b"" on failure; the warning PHP prints on failure)."""
    data = data or ""
    if len(data) % 2:
        problem = "Hexadecimal input string must have an even length"
    elif not re.fullmatch(r"[0-9a-fA-F]*", data):
        problem = "Input string must be hexadecimal string"
    else:
        return bytes.fromhex(data), ""
    return b"", _php_warning("hex2bin(): " + problem, _METHODS_PHP, _HEX2BIN_LINE)


def decode_bulk_data(params: Dict[str, str], body: bytes):
    """The bulk ``data`` as decoded JSON (doc §2): ``cb`` -> the raw body is zlib-compressed JSON
    (``data`` ignored); ``c`` -> ``data`` is hex of zlib bytes (bad hex -> PHP warning + "compressed
    hex not valid"). Returns None when there is nothing json_decode accepts."""
    if "cb" in params:
        text = _gzuncompress(body)
    elif "c" in params:
        raw, warning = _hex2bin(params.get("data"))
        if raw in (b"", b"0"):   # PHP: "" and "0" are false
            raise _ApiError("Format error, compressed hex not valid", prefix=warning)
        text = _gzuncompress(raw)
    else:
        text = params.get("data")
    return None if text is None else php_json_decode(text)


def _last_item_has_data(item) -> bool:
    """``isset($data[$len-1][0])``; an object there is a PHP fatal error (doc §2)."""
    if isinstance(item, dict):
        raise _PhpFatal("Error: Cannot use object of type stdClass as array", _METHODS_PHP, _COUNT_LINE)
    if isinstance(item, list):
        return bool(item) and item[0] is not None
    return isinstance(item, str) and item != ""


def _bulk_time_reference(params: Dict[str, str], last_item, now: int) -> int:
    """First present of ``sentat`` (now - sentat), ``offset`` (now - offset), ``time`` (that
    value; ``time=0`` counts), else now - the last row's time (doc §2)."""
    if "sentat" in params:
        return now - php_int(params["sentat"])
    if "offset" in params:
        return now - php_int(params["offset"])
    if "time" in params:
        return php_int(params["time"])
    return now - php_int(last_item[0])


def parse_bulk_row(item) -> Tuple[str, Dict[str, float]]:
    """One bulk row ``[t, node, v1, ...]`` -> (node, inputs) (doc §2): an object value gives named
    inputs and does not use up a positional number; a scalar value is cast with
    :func:`php_float` (``"abc"``, ``null``, ``""`` -> 0, ``true`` -> 1); an array value is a PHP
    fatal error (``strlen()``); a node that is an object is the documented format error."""
    node = item[1]
    if isinstance(node, dict):
        raise _ApiError("Format error, node must not be an object")
    if isinstance(node, list):
        raise _PhpFatal("TypeError: Illegal offset type in isset or empty", _METHODS_PHP, _COUNT_LINE)
    inputs: Dict[str, float] = {}
    position = 1
    for value in item[2:]:
        if isinstance(value, dict):
            for key, named in value.items():
                inputs[key] = php_float(named)
            continue
        if isinstance(value, list):
            raise _PhpFatal("TypeError: strlen(): Argument #1 ($string) must be of type string, "
                            "array given", _METHODS_PHP, _STRLEN_LINE)
        inputs[str(position)] = php_float(value)
        position += 1
    return sanitise_node(node), inputs


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True   # SO_REUSEADDR: "refuse" must be able to reopen the same port

    def __init__(self, address, fake: "FakeEmoncms"):
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive front end; all emoncms behaviour lives in :class:`FakeEmoncms`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format, *args):   # noqa: A002 - one line per request would be noise
        pass

    def setup(self):
        super().setup()
        self.server.fake._track(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._untrack(self.connection)

    def do_GET(self):
        self._serve()

    do_POST = do_GET

    def _serve(self):
        fake = self.server.fake
        body = self._read_body()
        if body is None:
            fake._record(self.command, urlsplit(self.path).path, _BAD_REQUEST.status)
            self._send(_BAD_REQUEST)
            return
        response = fake._answer(self._php_request(body))
        if response is None:
            self.close_connection = True   # no answer at all: close after reading the request
            fake._record(self.command, urlsplit(self.path).path, None)
            return
        fake._record(self.command, urlsplit(self.path).path, response.status)
        self._send(response)

    def _php_request(self, body: bytes) -> _Request:
        target = urlsplit(self.path)
        if len(body) > self.server.fake.post_max_size:
            body = b""   # PHP drops a body over post_max_size, silently (doc §3)
        return _Request(
            method=self.command,
            request_line=self.requestline,
            path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            form=_form_params(self.headers.get("Content-Type", ""), body),
            body=body,
            authorization=self.headers.get("Authorization"),
        )

    def _read_body(self) -> Optional[bytes]:
        """The request body (Content-Length or chunked); None when the framing is invalid."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                return None
            return self.rfile.read(length)
        except ValueError:
            return None

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass   # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _send(self, response: _Response) -> None:
        """One write per response; always Content-Length (keep-alive)."""
        lines = ["HTTP/1.1 %d %s" % (response.status, _REASONS.get(response.status, "")),
                 "Date: " + self.date_time_string(),
                 "Server: Apache/2.4.62 (Debian)"]
        lines += ["%s: %s" % header for header in response.headers]
        lines += ["Content-Length: %d" % len(response.body), "Content-Type: " + response.content_type]
        if response.close:
            self.close_connection = True
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + response.body)
        except OSError:
            self.close_connection = True


class FakeEmoncms:
    """A fake emoncms 11.16.8 serving the input API on ``url`` (see the module docstring).

    Thread-safe; state changes notify one Condition, so the ``wait_for_*`` methods never poll.
    """

    def __init__(self, write_key: str = WRITE_KEY, read_key: str = READ_KEY, max_nodes: int = 32,
                 host: str = "127.0.0.1", port: int = 0, post_max_size: int = POST_MAX_SIZE,
                 on_stored: Optional[Callable[[List[Row]], None]] = None):
        """``max_nodes``: emoncms' ``[input] max_node_id_limit``; ``post_max_size``: PHP's.
        ``on_stored(rows)`` is called with the rows each write stored, as they are stored
        (under the fake's lock, so it sees rows in storage order; it must be quick and must
        not wait for the fake)."""
        self.write_key = write_key.lower()
        self.post_max_size = post_max_size
        self.read_key = read_key.lower()
        self.host = host
        self._port = port
        self._store = _InputStore(max_nodes, on_stored)
        self._cond = self._store.cond
        self._seen: List[SeenRequest] = []
        self._mode = "ok"
        self._forced: collections.deque = collections.deque()   # fail_next() modes, in order
        self._release_epoch = 0    # bumped by set_mode()/stop(): hung requests give up
        self._hanging = 0
        self._stopped = True       # not serving until start()
        self._control = threading.RLock()   # serialises start/stop/set_mode
        self._server: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._connections: set = set()
        self._connections_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeEmoncms":
        """Bind and serve in a daemon thread; returns self."""
        with self._control:
            with self._cond:
                self._stopped = False
            if self._server is None and self._mode != "refuse":
                self._open_listener()
        return self

    def stop(self) -> None:
        """Shut down: close the listening socket and every connection, release hung requests."""
        with self._control:
            with self._cond:
                self._stopped = True
                self._release_epoch += 1
                self._cond.notify_all()
            self._close_listener()

    def __enter__(self) -> "FakeEmoncms":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _open_listener(self) -> None:
        server = _HTTPServer((self.host, self._port), self)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-emoncms:%d" % self._port, daemon=True)
        self._thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            thread.join()
        self._drop_connections()

    def _track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def _drop_connections(self) -> None:
        """Close open (keep-alive) connections, so clients cannot keep talking to a dead server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- public state ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; any path prefix also works
        (``{url}/emoncms/input/post``)."""
        return "http://%s:%d" % (self.host, self._port)

    @property
    def rows(self) -> List[Row]:
        """Every value written so far, in order (a copy)."""
        with self._cond:
            return list(self._store.rows)

    @property
    def requests_seen(self) -> List[SeenRequest]:
        """(method, path, status) of every request received, in order (a copy)."""
        with self._cond:
            return list(self._seen)

    @property
    def mode(self) -> str:
        with self._cond:
            return self._mode

    def node_count(self) -> int:
        """Distinct node ids that have inputs (what the ``max_nodes`` limit counts)."""
        with self._cond:
            return len(self._store.inputs)

    def inputs(self) -> Dict[str, Dict[str, dict]]:
        """The last value of every input, as ``input/get`` shows them (MySQL FLOAT precision)."""
        return self._store.snapshot()

    def reset(self) -> None:
        """Forget rows, inputs, nodes and processes (like ``input/clean``); requests_seen is kept."""
        self._store.clear()

    def add_accumulator(self, node: str, name: str) -> None:
        """Attach an Accumulator process to input node/name (doc §7): from now on each row
        stored for it adds its value to a feed, read with :meth:`accumulated`. A row emoncms
        processes twice shows there: the feed no longer equals the sum of the readings."""
        self._store.add_accumulator(str(node), name)

    def accumulated(self, node: str, name: str) -> float:
        """The value of the Accumulator feed of input node/name (see :meth:`add_accumulator`)."""
        with self._cond:
            return self._store.accumulators[(str(node), name)]

    # -- failure injection -------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """"ok" normal; "error500" 500 with an empty body; "db_down" 200 with PHP's "Fatal error ...
        Access denied" page, nothing stored (doc §7); "hang" read the request and never answer
        until the mode changes or stop() (then close without answer); "refuse" close the listening
        socket and open connections, reopen on the same port when the mode changes; "garbage" 200
        with ``<html>garbage</html>``; "reset" close the connection after reading the request."""
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        with self._control:
            with self._cond:
                previous, self._mode = self._mode, mode
                self._release_epoch += 1
                self._cond.notify_all()
            if mode == "refuse" and previous != "refuse":
                self._close_listener()
            elif mode != "refuse" and self._server is None and not self._stopped:
                self._open_listener()

    def fail_next(self, n: int, mode: str) -> None:
        """The next ``n`` requests get ``mode`` (one of FAIL_MODES), then the
        current mode applies again. Calls queue up."""
        if mode not in FAIL_MODES:
            raise ValueError("fail_next mode must be one of %s, not %r" % (", ".join(FAIL_MODES), mode))
        with self._cond:
            self._forced.extend([mode] * n)

    # -- waiting -----------------------------------------------------------------------------

    def wait_for_rows(self, n: int, timeout: float = 30) -> List[Row]:
        """Block until at least ``n`` rows are stored; return them all. AssertionError on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._store.rows) >= n, timeout):
                rows = self._store.rows
                raise AssertionError(
                    "fake emoncms: expected at least %d rows within %ss, %d arrived; last rows: %r; "
                    "last requests: %r" % (n, timeout, len(rows), rows[-5:], self._seen[-5:]))
            return list(self._store.rows)

    def wait_until(self, predicate, timeout: float = 30, what: str = "condition") -> List[Row]:
        """Block until ``predicate(rows)`` is true for the stored rows; return them."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._store.rows), timeout):
                rows = self._store.rows
                raise AssertionError("fake emoncms: %s not met within %ss; %d rows, last: %r"
                                     % (what, timeout, len(rows), rows[-5:]))
            return list(self._store.rows)

    def wait_for_requests(self, n: int, timeout: float = 30) -> List[SeenRequest]:
        """Block until at least ``n`` requests were received (answered or not); return them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._seen) >= n, timeout):
                raise AssertionError("fake emoncms: expected at least %d requests within %ss, %d "
                                     "arrived: %r" % (n, timeout, len(self._seen), self._seen[-5:]))
            return list(self._seen)

    def wait_for_hanging(self, n: int = 1, timeout: float = 30) -> None:
        """Block until ``n`` requests are being held by mode "hang"."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._hanging >= n, timeout):
                raise AssertionError("fake emoncms: expected %d hanging requests within %ss, have %d"
                                     % (n, timeout, self._hanging))

    # -- request handling (called from handler threads) --------------------------------------

    def _record(self, method: str, path: str, status: Optional[int]) -> None:
        with self._cond:
            self._seen.append(SeenRequest(method, path, status))
            self._cond.notify_all()

    def _take_mode(self) -> str:
        with self._cond:
            return self._forced.popleft() if self._forced else self._mode

    def _hang(self) -> None:
        """Hold the request until set_mode() or stop() is called."""
        with self._cond:
            epoch = self._release_epoch
            self._hanging += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._release_epoch != epoch or self._stopped)
            finally:
                self._hanging -= 1

    def _answer(self, request: _Request) -> Optional[_Response]:
        """The response for one request under the current mode; None means no answer at all."""
        mode = self._take_mode()
        if mode == "hang":
            self._hang()
            return None
        if mode in ("reset", "refuse"):
            return None
        if mode == "error500":
            return _ERROR_500
        if mode == "db_down":
            return _DB_DOWN
        if mode == "garbage":
            return _GARBAGE
        try:
            return self._dispatch(request)
        except Exception:   # a bug in the fake: make it loud, not a silent emoncms-like answer
            traceback.print_exc()
            return _Response(500, b"fake emoncms internal error\n" + traceback.format_exc().encode())

    def _dispatch(self, request: _Request) -> _Response:
        """Apache's request-line limit, then emoncms' index.php: route, API key, controller."""
        if len(request.request_line) > MAX_REQUEST_LINE:
            return _URI_TOO_LONG
        route = _parse_route(request.path)
        if route is None:
            return _NOT_FOUND
        controller, action, subaction, subaction2 = route
        role = self._role(request)
        if role == "invalid":
            return _UNAUTHORIZED
        if controller == "version" and action == "":
            return _Response(200, VERSION.encode())
        if controller != "input":
            return _NOT_FOUND
        if action in ("post", "bulk"):
            return self._write_api(request, action, subaction, role)
        if action == "get":
            return self._input_get(request, subaction, subaction2, role)
        if action == "clean":
            return self._input_clean(role)
        return _NOT_FOUND

    def _role(self, request: _Request) -> Optional[str]:
        """index.php: the key is the first present of ``apikey`` query, ``apikey`` form, the
        Authorization header with every literal ``Bearer `` deleted (doc §1). An empty (or "0")
        key means no key. A key must be 32 hex chars and is matched case-insensitively; anything
        else is "invalid" (401). Returns "write", "read", None (no key) or "invalid"."""
        if "apikey" in request.query:
            key = request.query["apikey"]
        elif "apikey" in request.form:
            key = request.form["apikey"]
        elif request.authorization is not None:
            key = request.authorization.replace("Bearer ", "")
        else:
            return None
        if not php_truthy(key):
            return None
        if _APIKEY.fullmatch(key):
            if key.lower() == self.write_key:
                return "write"
            if key.lower() == self.read_key:
                return "read"
        return "invalid"

    def _write_api(self, request: _Request, action: str, subaction: str, role: Optional[str]) -> _Response:
        """``input/post`` and ``input/bulk`` (input_controller.php): write key only (read key or no
        key -> 200, empty body, nothing stored: doc §3); ``ok``, or ``{"success": true}`` when a
        ``fulljson`` parameter is present; errors as ``{"success": false, ...}``; PHP fatal errors
        as 200 + HTML."""
        if role != "write":
            return _EMPTY_200
        params = request.params
        try:
            if action == "post":
                self._input_post(params, subaction)
            else:
                self._input_bulk(params, request.body)
        except _ApiError as error:
            return _Response(200, error.body())
        except _PhpFatal as fatal:
            return _Response(200, fatal.page(), HTML)
        return _Response(200, b'{"success": true}' if "fulljson" in params else b"ok")

    def _input_post(self, params: Dict[str, str], subaction: str) -> None:
        """``InputMethods::post`` (doc §1): node from the path segment, else ``node``; data from
        the first present of ``json``, ``fulljson``, ``csv``, ``data``, parsed as strict JSON when
        a ``fulljson`` parameter is present; everything validated before anything is stored."""
        node = sanitise_node(subaction if php_truthy(subaction) else params.get("node", ""))
        datain = ""
        for name in ("json", "fulljson", "csv", "data"):
            if name in params:
                datain = params[name]
                break
        if datain == "":
            raise _ApiError("Request contains no data via csv, json or data tag")
        time_key = _MISSING
        if "fulljson" in params:
            inputs, time_key = parse_fulljson(datain, time_param="time" in params)
        else:
            inputs = parse_relaxed(datain)
        now = int(time.time())
        if "time" in params:
            time_ = parse_time(params["time"], now)
        elif time_key is not _MISSING:
            time_ = parse_time(time_key, now)
        else:
            time_ = now
        self._store.process_node(node, time_, inputs)

    def _input_bulk(self, params: Dict[str, str], body: bytes) -> None:
        """``InputMethods::bulk`` (doc §2): rows processed in order, each written at once; the first
        bad row stops processing with earlier rows kept; rows with < 3 elements are skipped."""
        data = decode_bulk_data(params, body)
        if data is None or data == []:
            raise _ApiError("Format error, json string supplied is not valid")
        if not isinstance(data, list):
            raise _count_error(data)
        if not _last_item_has_data(data[-1]):
            raise _ApiError("Format error, last item in bulk data does not contain any data")
        reference = _bulk_time_reference(params, data[-1], int(time.time()))
        for item in data:
            if not isinstance(item, list):
                raise _count_error(item)
            if len(item) < 3:
                continue
            node, inputs = parse_bulk_row(item)
            self._store.process_node(node, reference + php_int(item[0]), inputs)

    def _input_get(self, request: _Request, node: str, name: str, role: Optional[str]) -> _Response:
        """``input/get`` (doc §4): all nodes, one node (path or ``?node=``), one input (path or
        ``?name=``), from the last values; "Node does not exist" / "Node variable does not exist"
        as JSON strings; ``false`` without a key."""
        if role is None:
            return _FALSE_JSON
        inputs = self._store.snapshot()
        query = request.query
        if php_truthy(node) or "node" in query:
            node = sanitise_name(node if php_truthy(node) else query["node"])
            if node not in inputs:
                result = "Node does not exist"
            elif php_truthy(name) or "name" in query:
                name = sanitise_name(name if php_truthy(name) else query["name"])
                result = inputs[node].get(name, "Node variable does not exist")
            else:
                result = inputs[node]
        else:
            result = inputs
        return _Response(200, php_json_encode(result).encode(), JSON)

    def _input_clean(self, role: Optional[str]) -> _Response:
        """``input/clean`` (doc §4): write key deletes every input -> ``Deleted N inputs``;
        otherwise ``false``."""
        if role != "write":
            return _FALSE_JSON
        return _Response(200, b"Deleted %d inputs" % self._store.clear())


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """Serve in the foreground until Ctrl-C/SIGTERM, for benchmarks and manual tries."""
    parser = argparse.ArgumentParser(description="Fake emoncms %s input API (test double)." % VERSION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="0 picks a free port (default 8088)")
    parser.add_argument("--write-key", default=WRITE_KEY)
    parser.add_argument("--read-key", default=READ_KEY)
    parser.add_argument("--max-nodes", type=int, default=32)
    args = parser.parse_args(argv)

    fake = FakeEmoncms(args.write_key, args.read_key, args.max_nodes, args.host, args.port).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("fake emoncms %s listening on %s" % (VERSION, fake.url), flush=True)
    print("write key: %s" % fake.write_key, flush=True)
    print("read key:  %s" % fake.read_key, flush=True)
    try:
        while not done.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        print("stored %d values from %d requests" % (len(fake.rows), len(fake.requests_seen)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
