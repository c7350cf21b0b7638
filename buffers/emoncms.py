"""Emoncms buffer: posts readings to emoncms' input API (local or remote).

A reading is posted on its own (``input/post``) as soon as it arrives when nothing is
queued; readings that piled up (an outage, a burst) go out together through ``input/bulk``,
so a day of backlog drains in seconds. Every reading carries the time it was received.
The API key travels in the ``Authorization: Bearer`` header, never in a URL.

What emoncms' answers mean (research: emoncms-api.md, §3 and §7). emoncms stores the rows of a
bulk upload one by one, running each input's processes as it goes, and stops at the first row
it cannot take: **the rows in front of it are stored, the rows behind it are not touched**, and
nothing of this is undone. Sending a stored row again makes emoncms process it again (an
Accumulator, a pulse counter, kWh-to-power count it twice). So after a refusal the one question
is *which row was refused*, and it is answered without sending anything again:

* ``Error: Reached the maximal allowed number of different NodeIds ... Node 'X' was ignored``
  names the node: the refused row is the first row of node X (the rows in front of it are of
  nodes emoncms has). The engine counts the rows in front as delivered, drops that one, and
  remembers that node X is refused (see ``buffers.base``).
* A PHP "Fatal error" page saying ``Out of range value for column 'value'`` (or ``'time'``):
  the refused row is the first row that breaks emoncms' column range (a MySQL FLOAT value,
  an INT time), found by the same rule here. ``check()`` applies that rule before sending, so
  this answer only comes if the rule here and the server's disagree.
* Any other refusal (a message or a crash of PHP on the data that this gateway's rows do not
  cause with emoncms 11.16.8) names no row and has no rule: the engine's search is the last
  resort, and may make emoncms process the rows in front of the refused one again.

A crash that is not about the data (the database down: ``Access denied``, ``Connection
refused``, ...; a 500 with an empty body when ``display_errors`` is off) stores nothing that
can be told apart, and is retried like any server trouble; so is a reply that never came
(a timeout, a reset), after which the batch is sent again: the one case where emoncms may get
a row twice. An empty 200 means a read-only key (nothing stored: keep everything, as for a
401). A bulk body PHP dropped (over ``post_max_size``) reads as ``json string supplied is not
valid``: nothing was stored, smaller batches follow. A 414 means the URL is too long: smaller
batches cannot cure that once a batch is one reading, then everything is kept, as for a wrong
URL.
"""

import ipaddress
import json
import math
import re
import time
import urllib.parse
import zlib
from typing import List, Optional

from buffers.base import AuthError, RejectedError, TooLargeError, TransientError
from gateway.formats import compact_json
from buffers.http import HttpBuffer, retry_after
from buffers.httpclient import Reply
from gateway.frame import Frame

FLOAT_MAX = 3.4028234663852886e38   # emoncms' input.value is a MySQL FLOAT: larger crash it
TIME_MIN, TIME_MAX = -2 ** 31, 2 ** 31 - 1   # input.time is a MySQL INT
_API_KEY = re.compile(r"[0-9a-fA-F]{32}")
_NODE_NAME_STRIP = re.compile(r"[^\w\s.\-]")   # what emoncms deletes from a node id
_REFUSED_NODE = re.compile(r"Node '(.*)' (?:was ignored|does not belong to device)")
_BODY_DROPPED = ("Format error, json string supplied is not valid",
                 "Request contains no data via csv, json or data tag")
_OUT_OF_RANGE = re.compile(r"Out of range value for column '(\w+)'")
_DATA_CRASH = re.compile(r"Uncaught (?:TypeError|ValueError|ArgumentCountError|Error):")
COMPRESS_FROM = 1400   # bytes of bulk body: smaller ones fit in one TCP segment anyway
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_ZLIB = {"Content-Type": "application/octet-stream"}


class EmoncmsBuffer(HttpBuffer):
    SPEC = """
    url = string(default='http://localhost/emoncms')
    apikey = string(default='')
    protocol = string(default=None)
    domain = string(default=None)
    path = string(default=None)
    send_names = boolean(default=True)
    compress = option('auto', 'always', 'never', default='auto')
    """
    # compress: bulk bodies go zlib-compressed (emoncms' ``cb=1``): JSON of numbers shrinks
    # about five times, which is what a slow uplink (a Pi on a 3G dongle or busy ADSL) is
    # limited by. auto: compressed when emoncms is on another machine and the body is larger
    # than one TCP segment; a local emoncms gains nothing from it but the CPU it costs.
    # send_names: False sends each reading as emonhub does with sendnames = 0: under the
    # node's id (17, not emonTx4_17), its values unnamed (emoncms calls the inputs 1, 2, ...)
    # and the signal strength as the last of them; True: the node's name and its inputs' names.
    SAMPLE = """
    # Posts readings to emoncms. Inactive until an API key is filled in.
    [[...]]
    # Where emoncms lives, e.g. http://localhost/emoncms or https://emoncms.org.
    # (The original protocol/domain/path keys are accepted too.)
    url = http://localhost/emoncms
    # The write API key (emoncms: Setup > My Account). Never logged nor shown.
    apikey =
    # Seconds to wait for emoncms to answer.
    timeout
    # Verify HTTPS certificates. Turn off only for a test server.
    verify_tls
    # A PEM file of the CA that signed a private emoncms' certificate.
    ca_file
    # False: as emonhub's sendnames = 0: under the node's id (17, not emonTx4_17), its
    # values unnamed (emoncms calls them 1, 2, ...), the signal strength the last of them.
    send_names
    # Bulk bodies zlib-compressed (emoncms' cb=1), for a slow uplink. auto: when emoncms
    # is on another machine and the body is over 1400 bytes; always; never.
    compress
    """
    SECRETS = ("apikey",)

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        return cls.url_problems(cls.base_url(settings))

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        warnings = super().warn_settings(settings)
        key = settings["apikey"]
        if key and not _API_KEY.fullmatch(key):
            warnings.append("apikey: not 32 hexadecimal characters, emoncms will refuse it "
                            "(copy the Write API Key from emoncms: Setup > My Account)")
        return warnings

    @classmethod
    def modernise(cls, settings: dict, renamed) -> dict:
        """The original ``protocol``/``domain``/``path`` keys as the ``url`` they make."""
        modern = {k: v for k, v in settings.items() if k not in ("protocol", "domain", "path")}
        modern["url"] = cls.base_url(settings)
        return modern

    @staticmethod
    def base_url(settings: dict) -> str:
        """The emoncms URL; the original ``protocol``/``domain``/``path`` keys still work."""
        if settings.get("domain"):
            url = (settings.get("protocol") or "http://") + settings["domain"] + (settings.get("path") or "")
        else:
            url = settings["url"]
        return url.rstrip("/")

    # -- plugin hooks -------------------------------------------------------------------
    def configure(self) -> None:
        super().configure()
        self.url = self.base_url(self.settings)
        self.session.headers["Authorization"] = "Bearer " + self.settings["apikey"]
        mode = self.settings.get("compress", "auto")
        self.compress_from = {"always": 0, "never": None}.get(
            mode, None if _is_loopback(self.url) else COMPRESS_FROM)

    def inactive_reason(self) -> Optional[str]:
        if not self.settings["apikey"]:
            return "no apikey set (fill in your emoncms write API key to start sending)"
        return None

    def check(self, frame: Frame) -> Optional[str]:
        value = _unstorable_value(frame)
        if value is not None:
            return f"value {value} is beyond what emoncms can store"
        if not TIME_MIN <= int(frame.time) <= TIME_MAX and self.clock.synchronised():
            return f"time {frame.time:.0f} is beyond what emoncms can store"
        return None

    def send(self, batch: List[Frame]) -> None:
        if not self.settings.get("send_names", True):
            batch = [self._unnamed(frame) for frame in batch]
        synchronised = self.clock.synchronised()
        if len(batch) == 1 and synchronised:
            frame = batch[0]
            form = {"node": str(frame.node), "time": str(int(frame.time)),
                    "fulljson": compact_json(frame.named_values())}
            self._judge(self.post(f"{self.url}/input/post", data=form), '{"success": true}', batch,
                        synchronised)
            return
        data = compact_json([bulk_row(f) for f in batch])
        if synchronised:
            when = "time=0"   # each row's time is absolute: reference 0 + row time
        else:
            # Our clock is wrong by an unknown amount: emoncms re-bases the rows on its own
            # clock (row time - sentat + its now), which cancels our error.
            when = f"sentat={int(time.time())}"
        if self.compress_from is not None and len(data) >= self.compress_from:
            reply = self.post(f"{self.url}/input/bulk?cb=1&{when}", headers=_ZLIB,
                              data=zlib.compress(data.encode(), 1))
        else:
            reply = self.post(f"{self.url}/input/bulk", headers=_FORM,
                              data=f"data={form_value(data)}&{when}")
        self._judge(reply, "ok", batch, synchronised)

    def _unnamed(self, frame: Frame) -> Frame:
        """``frame`` as emonhub's ``sendnames = 0`` sends it (see ``send_names``)."""
        node = self.nodes.node_id(frame.node) if self.nodes is not None else frame.node
        values = frame.values + ((frame.rssi,) if frame.rssi else ())
        return Frame(node, values, frame.time, None, None, frame.source)

    # -- emoncms' answers ---------------------------------------------------------------
    def _judge(self, reply: Reply, expected: str, batch: List[Frame],
               absolute_times: bool) -> None:
        """Return if emoncms stored every row, else raise what it did (module docstring)."""
        body = reply.text.strip()
        status = reply.status_code
        if status == 200:
            if body == expected:
                return
            if not body:
                raise AuthError("emoncms answered with an empty body and stored nothing: "
                                "is the apikey a read-only key?")
            message = _failure_message(body)
            if message is not None:
                self._refused(message, batch)
            crash = _fatal_error(body)
            if crash is not None:
                self._crashed(crash, batch, absolute_times)
            raise TransientError(f"unexpected answer from emoncms: {body[:120]!r}")
        if status == 401:
            raise AuthError("emoncms refused the API key (401 Invalid API key)")
        if status == 413 or (status == 414 and len(batch) > 1):
            raise TooLargeError(f"emoncms answered {status}: request too large")
        if status in (403, 404, 414):
            raise AuthError(f"emoncms answered {status} for {reply.url.split('?')[0]}: check the url")
        if 300 <= status < 400:
            self.judge(reply, "emoncms")   # raises: a redirect to put in url
        raise TransientError(f"emoncms answered {status} {reply.reason}", retry_after(reply))

    def _refused(self, message: str, batch: List[Frame]) -> None:
        """Raise what a ``{"success": false, "message": ...}`` answer means."""
        said = f"emoncms refused: {message}"
        if message in _BODY_DROPPED:   # PHP dropped the body (post_max_size): nothing stored
            if len(batch) > 1:
                raise TooLargeError(f"{said} (the request was larger than PHP's post_max_size)")
            raise TransientError(f"{said} (emoncms did not receive the reading)")
        node = _REFUSED_NODE.search(message)
        if node is not None:
            refused = _first(batch, lambda f: emoncms_node(f.node) == node.group(1))
            if refused is not None:
                raise RejectedError(said, delivered=refused, node_refused=True)
        raise RejectedError(said)

    def _crashed(self, crash: str, batch: List[Frame], absolute_times: bool) -> None:
        """Raise what a PHP "Fatal error" page means: bad data, or server trouble."""
        said = f"emoncms crashed: {crash}"
        column = _OUT_OF_RANGE.search(crash)
        if column is not None:
            if column.group(1) == "value":
                refused = _first(batch, lambda f: _unstorable_value(f) is not None)
            elif absolute_times:
                refused = _first(batch, lambda f: not TIME_MIN <= int(f.time) <= TIME_MAX)
            else:
                refused = None
            raise RejectedError(said, delivered=refused)
        if _DATA_CRASH.search(crash):
            raise RejectedError(said)
        raise TransientError(said)


def form_value(text: str) -> str:
    """``text`` (JSON, so ASCII) as a form-encoded value. Only the characters that mean
    something in a form body are escaped: the rest of JSON (``[ ] { } " , :``) decodes as
    itself, and this costs a few string scans where a full URL-encoding costs a Python call
    per byte (the largest cost of a bulk post)."""
    return (text.replace("%", "%25").replace("&", "%26").replace("+", "%2B")
            .replace("=", "%3D").replace(" ", "%20").replace("#", "%23"))


def _is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (localhost, 127.x.x.x, ::1)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def emoncms_node(node) -> str:
    """A node id as emoncms keeps it (and names it in messages)."""
    return _NODE_NAME_STRIP.sub("", str(node)) or "0"


def _unstorable_value(frame: Frame):
    """The first value of ``frame`` emoncms cannot store (not finite, or beyond FLOAT), or None."""
    for value in frame.values:
        if not math.isfinite(value) or abs(value) > FLOAT_MAX:
            return value
    return None


def _first(batch: List[Frame], test) -> Optional[int]:
    return next((i for i, frame in enumerate(batch) if test(frame)), None)


def _failure_message(body: str) -> Optional[str]:
    """emoncms' ``{"success": false, "message": ...}`` message, or None for any other body."""
    try:
        reply = json.loads(body)
    except ValueError:
        return None
    if isinstance(reply, dict) and reply.get("success") is False:
        return str(reply.get("message", "no reason given"))
    return None


def _fatal_error(body: str) -> Optional[str]:
    """The first line of PHP's "Fatal error" page, without markup (``Uncaught ...``), or None."""
    if "<b>Fatal error</b>" not in body:
        return None
    text = re.sub(r"<[^>]+>", "", body).replace("&gt;", ">").replace("&lt;", "<")
    line = text.split("Fatal error:", 1)[1].strip().splitlines()[0]
    return re.sub(r" in /\S+$", "", line)[:200]


def bulk_row(frame: Frame) -> list:
    """A reading as an ``input/bulk`` row: ``[time, node, v1, v2, ...]`` when its values are
    positional (emoncms names them 1, 2, ... itself: the shortest form to build and send),
    ``[time, node, {name: value, ...}]`` when they have names; ``rssi`` as a named input."""
    if frame.names is None:
        row = [int(frame.time), frame.node, *frame.values]
        if frame.rssi is not None:
            row.append({"rssi": frame.rssi})
        return row
    return [int(frame.time), frame.node, frame.named_values()]
