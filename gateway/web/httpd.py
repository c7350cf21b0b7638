"""A small HTTP server that keeps answering good clients while others abuse it.

``http.server``'s threading server gives every connection a thread that blocks reading it:
300 connections trickling a header a byte at a time hold 300 threads, and a request that
announces a megabyte gets a megabyte read into memory. Here one thread reads every
connection through a selector, with bounds on everything an attacker controls:

- **connections**: at most ``max_connections`` at once; when full, the oldest connection that
  has not finished sending its request is closed to make room (a good client sends its
  request at once, so it is never the oldest), else the newcomer is refused;
- **time**: the request line and headers must arrive within ``header_timeout`` seconds of the
  connection, the body within ``body_timeout`` seconds of the headers (408 otherwise);
- **size**: headers above ``max_header_bytes`` get 431; a body larger than what
  ``body_limit(method, path, headers)`` allows gets 413 as soon as its ``Content-Length`` is
  read, before any of it is;
- **threads**: only complete requests reach the ``workers`` threads that run the handler
  (a ``BufferedRequestHandler``: ``http.server``'s request handler fed from memory).

One server may listen on several addresses (``listen``), each with its own handler and body
limit: they share the thread, the workers and the connection bound.

Between connections the thread blocks in ``select`` with no timeout: an idle server costs no
CPU. The handler speaks HTTP/1.0 (one request per connection), which every browser handles.
"""

import http.client
import io
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Callable, Dict, NamedTuple, Optional, Set

from gateway.logs import LogThrottle, error_text

RECV_SIZE = 65536
LINGER = 2.0          # s an answered-early connection is drained before it is closed ...
LINGER_BYTES = 65536  # ... or until this much more came (read and forgotten)
SEND_TIMEOUT = 10.0   # s a worker waits for a client that does not read its answer
ACCEPT_PAUSE = 1.0    # s without accepting after accept() failed (no file descriptor left)
ACCEPTS_PER_PASS = 8  # new connections taken per pass, before reading what the others sent

BodyLimit = Callable[[str, str, Message], int]


class Site(NamedTuple):
    """What one listening address serves: its handler class and its body limit."""

    handler_class: type
    body_limit: BodyLimit


class BufferedRequest:
    """A complete request (head and body) read by the server thread, and its socket."""

    __slots__ = ("sock", "data")

    def __init__(self, sock: socket.socket, data: bytes):
        self.sock = sock
        self.data = data


class _SocketWriter(io.BufferedIOBase):
    """``wfile``: every write goes out whole (``sendall``)."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sock.sendall(data)
        return len(data)


class BufferedRequestHandler(BaseHTTPRequestHandler):
    """``BaseHTTPRequestHandler`` reading a request already in memory: a handler written for
    ``http.server`` works unchanged (``self.server`` is the BoundedHTTPServer)."""

    def setup(self) -> None:
        request: BufferedRequest = self.request
        self.connection = request.sock
        self.rfile = io.BytesIO(request.data)
        self.wfile = _SocketWriter(request.sock)

    def finish(self) -> None:
        self.rfile.close()


class _Connection:
    """A connection the server thread is reading (or draining after an early answer)."""

    __slots__ = ("sock", "address", "site", "opened", "deadline", "data", "head_end", "expected",
                 "lingering", "drained")

    def __init__(self, sock: socket.socket, address, site: Site, now: float, deadline: float):
        self.sock = sock
        self.address = address
        self.site = site
        self.opened = now
        self.deadline = deadline
        self.data = bytearray()
        self.head_end: Optional[int] = None   # where the body starts, once the headers are in
        self.expected: Optional[int] = None   # the whole request's length, once known
        self.lingering = False
        self.drained = 0


class BoundedHTTPServer:
    """Serves the addresses given to ``listen`` within the bounds above (see the module)."""

    def __init__(self, *, name: str = "http", log: Optional[logging.Logger] = None,
                 max_connections: int = 64, workers: int = 4, header_timeout: float = 10.0,
                 body_timeout: float = 30.0, max_header_bytes: int = 16384):
        self.name = name
        self.log = log or logging.getLogger(f"oemgateway.{name}")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes
        self._listening: Dict[socket.socket, Site] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._reading: Dict[int, _Connection] = {}
        self._busy: Set[socket.socket] = set()   # connections handed to the workers
        self._busy_lock = threading.Lock()
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-worker")
        self._stopping = threading.Event()
        self._accepting_at: Optional[float] = None   # when accepting resumes after a failure
        self._crowded = LogThrottle(self.log, logging.WARNING, 60.0)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def listen(self, bind: str, port: int, handler_class, body_limit: BodyLimit) -> int:
        """Serve ``handler_class`` on ``bind:port`` too (before ``start``); a request announcing a
        body larger than ``body_limit(method, path, headers)`` is refused. Returns the port
        (the one the system chose if ``port`` is 0). OSError if the address cannot be had."""
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        sock = socket.create_server((bind, port), family=family, backlog=128)
        sock.setblocking(False)
        self._listening[sock] = Site(handler_class, body_limit)
        self._selector.register(sock, selectors.EVENT_READ)
        return sock.getsockname()[1]

    @property
    def port(self) -> int:
        """The port of the first address listened on."""
        return next(iter(self._listening)).getsockname()[1]

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and close every connection (answers being written end at once)."""
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.ident is not None:   # started
            self._thread.join(5)
        self._workers.shutdown(wait=False, cancel_futures=True)
        with self._busy_lock:
            for sock in self._busy:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for conn in list(self._reading.values()):
            conn.sock.close()
        self._reading.clear()
        self._selector.close()
        for sock in self._listening:
            sock.close()
        self._wake_r.close()
        self._wake_w.close()
        self._crowded.flush()

    # -- the server thread --------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stopping.is_set():
            deadlines = [c.deadline for c in self._reading.values()]
            if self._accepting_at is not None:
                deadlines.append(self._accepting_at)
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            events = self._selector.select(timeout)
            for key, _ in events:   # what clients sent first, then new connections
                conn = self._reading.get(key.fd)
                if conn is not None:
                    self._guarded(self._on_readable, conn)
                elif key.fileobj is self._wake_r:
                    self._wake_r.recv(64)
            for key, _ in events:
                if key.fileobj in self._listening and self._accepting_at is None:
                    self._accept(key.fileobj)
            now = time.monotonic()
            if self._accepting_at is not None and self._accepting_at <= now:
                self._accepting_at = None
                for sock in self._listening:
                    self._selector.register(sock, selectors.EVENT_READ)
            for conn in [c for c in self._reading.values() if c.deadline <= now]:
                self._guarded(self._expired, conn)

    def _guarded(self, step: Callable[[_Connection], None], conn: _Connection) -> None:
        """One connection's trouble (a bug, a reset) never stops the server thread."""
        try:
            step(conn)
        except Exception:   # noqa: BLE001 - keep serving the others
            self.log.debug("%s: connection from %s failed", self.name, conn.address[0], exc_info=True)
            self._drop(conn)

    def _accept(self, listening: socket.socket) -> None:
        """Take a few of the waiting connections. A few, not all: when full, each newcomer closes
        the oldest connection still sending its request, and a good client that has just
        connected must have its request read (next pass) before a flood of newcomers queued
        behind it makes it the oldest."""
        for _ in range(ACCEPTS_PER_PASS):
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # out of file descriptors: pause rather than spin
                self._crowded("%s: cannot accept a connection: %s", self.name, error_text(exc))
                for other in self._listening:
                    self._selector.unregister(other)
                self._accepting_at = time.monotonic() + ACCEPT_PAUSE
                return
            if len(self._reading) + len(self._busy) >= self.max_connections and not self._evict_oldest():
                self._crowded("%s: %d connections at once: refused one from %s",
                              self.name, self.max_connections, address[0])
                sock.close()
                continue
            sock.setblocking(False)
            now = time.monotonic()
            conn = _Connection(sock, address, self._listening[listening], now, now + self.header_timeout)
            self._reading[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ)

    def _evict_oldest(self) -> bool:
        """Close the connection that has been sending its request the longest: the slowest.
        Each one is read once more first: a request that has arrived meanwhile is served."""
        for oldest in sorted(self._reading.values(), key=lambda c: (not c.lingering, c.opened)):
            if not oldest.lingering:
                self._guarded(self._on_readable, oldest)
                if oldest.sock.fileno() not in self._reading or self._reading[oldest.sock.fileno()] is not oldest:
                    continue   # it was complete (now with a worker) or closed
                self._crowded("%s: %d connections at once: closed the one from %s that had not sent "
                              "its request in %.1f s", self.name, self.max_connections, oldest.address[0],
                              time.monotonic() - oldest.opened)
            self._drop(oldest)
            return True
        return False

    def _on_readable(self, conn: _Connection) -> None:
        try:
            chunk = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        if conn.lingering:   # an answered request's leftovers: read and forgotten
            conn.drained += len(chunk)
            if conn.drained > LINGER_BYTES:
                self._drop(conn)
            return
        conn.data += chunk
        if conn.head_end is None:
            self._read_head(conn)
        if conn.expected is not None and len(conn.data) >= conn.expected:
            self._dispatch(conn)

    def _read_head(self, conn: _Connection) -> None:
        end = _head_end(conn.data)
        if end is None:
            if len(conn.data) > self.max_header_bytes:
                self._refuse(conn, 431, "Request Header Fields Too Large")
            return
        conn.head_end = end
        try:
            method, path, headers = _parse_head(bytes(conn.data[:end]))
        except ValueError:
            self._refuse(conn, 400, "Bad Request")
            return
        if headers.get("Transfer-Encoding"):
            self._refuse(conn, 411, "Length Required")
            return
        length_text = (headers.get("Content-Length") or "0").strip()
        if not length_text.isdigit():
            self._refuse(conn, 400, "Bad Request")
            return
        if int(length_text) > conn.site.body_limit(method, path, headers):
            self._refuse(conn, 413, "Payload Too Large")
            return
        conn.expected = end + int(length_text)
        conn.deadline = time.monotonic() + self.body_timeout

    def _dispatch(self, conn: _Connection) -> None:
        """A complete request: off to a worker."""
        self._forget(conn)
        with self._busy_lock:
            self._busy.add(conn.sock)
        request = BufferedRequest(conn.sock, bytes(conn.data[:conn.expected]))
        try:
            self._workers.submit(self._handle, conn.site.handler_class, request, conn.address)
        except RuntimeError:   # shutting down
            self._handled(conn.sock)

    def _handle(self, handler_class, request: BufferedRequest, address) -> None:
        try:
            request.sock.setblocking(True)
            request.sock.settimeout(SEND_TIMEOUT)
            handler_class(request, address, self)
        except OSError as exc:   # the client went away mid-answer
            self.log.debug("%s: answering %s failed: %s", self.name, address[0], exc)
        except Exception:   # noqa: BLE001 - a bug: logged, and the next request is served
            self.log.exception("%s: internal error answering %s", self.name, address[0])
        finally:
            self._handled(request.sock)

    def _handled(self, sock: socket.socket) -> None:
        with self._busy_lock:
            self._busy.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _expired(self, conn: _Connection) -> None:
        if conn.lingering:
            self._drop(conn)
            return
        waited = "its headers" if conn.head_end is None else "its body"
        self.log.debug("%s: %s did not send %s in time: closed", self.name, conn.address[0], waited)
        self._refuse(conn, 408, "Request Timeout")

    def _refuse(self, conn: _Connection, code: int, reason: str) -> None:
        """Answer ``code`` at once, then drain what the client still sends for a moment (so it
        reads the answer instead of a reset) without keeping any of it."""
        body = f"{code} {reason}\n".encode()
        try:
            conn.sock.send(b"HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                           b"Connection: close\r\n\r\n%s" % (code, reason.encode(), len(body), body))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.data = bytearray()
        conn.lingering = True
        conn.deadline = time.monotonic() + LINGER

    def _forget(self, conn: _Connection) -> None:
        self._reading.pop(conn.sock.fileno(), None)
        self._selector.unregister(conn.sock)

    def _drop(self, conn: _Connection) -> None:
        if conn.sock.fileno() >= 0 and conn.sock.fileno() in self._reading:
            self._forget(conn)
        conn.sock.close()


def _head_end(data: bytearray) -> Optional[int]:
    """Where the headers end (the blank line's end), or None if they have not yet."""
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else None


def _parse_head(head: bytes):
    """``(method, path, headers)`` of a request's head; ValueError if it is not HTTP."""
    line, _, rest = head.partition(b"\n")
    words = line.decode("latin-1").split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request line")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as exc:
        raise ValueError(str(exc)) from None
    return words[0], words[1].split("?", 1)[0], headers
