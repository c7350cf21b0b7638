"""What the test HTTP servers (InfluxDB, webhook) share: serving, failure injection, waiting.

A subclass implements ``handle(request) -> Response`` as the real server would answer. On top
of that, a test can make the next requests fail (``fail_next``: a status with headers, or
"reset": the connection closed without an answer) or every request (``set_mode``). Every
request is recorded with its answer; the ``wait_*`` methods block on a Condition, never poll.
"""

import collections
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

WAIT = 30


@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]          # names in lower case
    body: bytes
    raw_target: str                  # the request target as sent, query string included
    at: float = 0.0                  # time.monotonic() when it arrived
    status: Optional[int] = None     # what was answered (None: no answer)
    answered_at: float = 0.0


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: List[Tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json; charset=utf-8"


class FakeHttpServer:
    """A threaded HTTP/1.1 server on 127.0.0.1; subclasses say how to answer."""

    name = "test server"

    def __init__(self):
        self._cond = threading.Condition()
        self.requests: List[Request] = []
        self._forced: collections.deque = collections.deque()
        self._mode: Optional[Response] = None   # answer every request with this
        self._reset_all = False
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "FakeHttpServer":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.app = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(WAIT)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    # -- failures -----------------------------------------------------------------------
    def fail_next(self, count: int, status, headers=(), body: bytes = b"") -> None:
        """The next ``count`` requests get ``status`` (an int, or "reset": no answer at all)."""
        with self._cond:
            self._forced.extend([(status, list(headers), body)] * count)

    def set_mode(self, status=None, headers=(), body: bytes = b"") -> None:
        """Every request gets ``status`` ("reset" for no answer) until ``set_mode(None)``."""
        with self._cond:
            self._reset_all = status == "reset"
            self._mode = None if status in (None, "reset") else Response(status, body, list(headers))
            self._cond.notify_all()

    # -- waiting ------------------------------------------------------------------------
    def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Block until ``predicate()`` (evaluated under the server's lock) is true."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"{self.name}: {what} not met within {timeout} s; last "
                                     f"requests: {[(r.method, r.raw_target, r.status) for r in self.requests[-5:]]}")

    def wait_for_requests(self, count: int) -> List[Request]:
        """Block until ``count`` requests were answered (or deliberately not); return them all."""
        self.wait_until(lambda: sum(1 for r in self.requests if r.answered_at) >= count,
                        f"{count} requests")
        with self._cond:
            return list(self.requests)

    def notify(self) -> None:
        """Subclasses call this (holding ``self._cond``) after storing something."""
        self._cond.notify_all()

    # -- what a subclass implements -----------------------------------------------------
    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    # -- plumbing -----------------------------------------------------------------------
    def _answer(self, request: Request) -> Optional[Response]:
        with self._cond:
            request.at = time.monotonic()
            self.requests.append(request)
            forced = self._forced.popleft() if self._forced else None
            mode, reset = self._mode, self._reset_all
        if forced is not None:
            status, headers, body = forced
            response = None if status == "reset" else Response(status, body, headers)
        elif reset:
            response = None
        elif mode is not None:
            response = mode
        else:
            with self._cond:
                response = self.handle(request)
        with self._cond:
            request.status = response.status if response is not None else None
            request.answered_at = time.monotonic()
            self._cond.notify_all()
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format, *args):   # noqa: A002
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        target = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
        request = Request(self.command, target.path, query,
                          {k.lower(): v for k, v in self.headers.items()}, body, self.path)
        response = self.server.app._answer(request)
        if response is None:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.body or response.status != 204:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST
