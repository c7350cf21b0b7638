"""The bounded HTTP server under the web page and /status: time, size and connection limits,
each shown on a real socket against a server in this process (with short timeouts)."""

import json
import socket

import pytest

from gateway.web.httpd import BoundedHTTPServer, BufferedRequestHandler
from tests.support.daemon import WAIT
from tests.support.raw_http import answer_code


class Echo(BufferedRequestHandler):
    """Answers with what it was sent; ``/boom`` is a handler bug."""

    def do_POST(self):   # noqa: N802
        if self.path == "/boom":
            raise RuntimeError("a bug in a handler")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = json.dumps({"path": self.path, "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST

    def log_message(self, format, *args):   # noqa: A002
        pass


@pytest.fixture
def server():
    started = []

    def start(**bounds):
        bounds = dict({"header_timeout": 0.3, "body_timeout": 0.3}, **bounds)
        srv = BoundedHTTPServer(**bounds)
        srv.listen("127.0.0.1", 0, Echo, lambda method, path, headers: 100)
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.close()


def connect(srv) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)


def post(srv, body: bytes = b"hello", path: str = "/echo") -> int:
    with connect(srv) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     % (path.encode(), len(body), body))
        return answer_code(sock)


def test_a_complete_request_is_answered_and_a_handler_bug_does_not_stop_the_server(server, caplog):
    srv = server()
    assert post(srv) == 200
    assert post(srv, path="/boom") == 0       # closed unanswered ...
    assert "internal error answering 127.0.0.1" in caplog.text
    assert post(srv) == 200                   # ... and the next request is served


def test_headers_that_never_end_are_cut_off(server):
    srv = server()
    with connect(srv) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")   # and nothing more
        assert answer_code(sock) == 408


def test_a_body_that_never_comes_is_cut_off(server):
    srv = server()
    with connect(srv) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\nonly part")
        assert answer_code(sock) == 408


@pytest.mark.parametrize("request_bytes, code", [
    (b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413),           # over the body limit
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),   # no length given
    (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"this is not http\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20000, 431),               # headers too large
])
def test_bad_requests_are_answered_at_once_without_reading_more(server, request_bytes, code):
    srv = server(header_timeout=WAIT * 2, body_timeout=WAIT * 2)   # so only the bound can answer
    with connect(srv) as sock:
        sock.sendall(request_bytes)
        assert answer_code(sock) == code


def test_when_full_the_oldest_unfinished_connection_makes_room(server):
    srv = server(max_connections=3, header_timeout=WAIT * 2)
    silent = [connect(srv) for _ in range(3)]
    try:
        assert post(srv) == 200                  # the good client gets in ...
        assert answer_code(silent[0]) == 0       # ... the oldest silent one was closed for it
    finally:
        for sock in silent:
            sock.close()
