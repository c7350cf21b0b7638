"""The HTTP buffers' client (buffers/httpclient.py) against a real socket server."""

import socket
import ssl
import threading

import pytest

from buffers.base import AuthError
from buffers.http import HttpBuffer
from buffers.httpclient import HttpClient, environ_proxy
from tests.support.mosquitto import Certificates


class OneShotServer:
    """Answers each request with ``200 ok`` and then closes the connection when ``close_after``
    is set, as a server does with an idle kept-alive connection. Counts connections."""

    def __init__(self, close_after: bool, tls=None):
        self.close_after = close_after
        self.tls = tls
        self.connections = 0
        self.bodies = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://localhost:{self.listener.getsockname()[1]}/x"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                return
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, data = data.split(b"\r\n\r\n", 1)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(data) < length:
                    data += conn.recv(65536)
                self.bodies.append(data[:length])
                data = data[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                             b"Content-Length: 2\r\n\r\nok")
                if self.close_after:
                    return

    def close(self):
        self.listener.close()


def test_one_connection_is_kept_alive_for_many_posts():
    server = OneShotServer(close_after=False)
    client = HttpClient("test")
    for i in range(5):
        reply = client.post(server.url, data={"n": str(i)}, timeout=5)
        assert (reply.status_code, reply.text) == (200, "ok")
    assert server.connections == 1
    assert server.bodies == [f"n={i}".encode() for i in range(5)]
    server.close()


def test_a_connection_the_server_closed_meanwhile_is_not_written_into():
    """Every post is delivered: the client sees the closed connection and opens a new one
    rather than failing a post (and having it sent again later)."""
    server = OneShotServer(close_after=True)
    client = HttpClient("test")
    for i in range(5):
        reply = client.post(server.url, data=b"x%d" % i, timeout=5)
        assert reply.status_code == 200
        # wait until the server has closed its side, as an idle server would have
        conn = next(iter(client._connections.values()))
        conn.sock.settimeout(5)
        assert conn.sock.recv(1, socket.MSG_PEEK) == b""
    assert server.bodies == [b"x%d" % i for i in range(5)] and server.connections == 5
    server.close()


def test_proxies_come_from_the_environment_unless_no_proxy_names_the_host():
    env = {"HTTPS_PROXY": "http://user:pw@proxy:3128", "no_proxy": "localhost,.lan"}
    assert environ_proxy("https", "emoncms.org", env).hostname == "proxy"
    assert environ_proxy("https", "emoncms.org", env).username == "user"
    assert environ_proxy("http", "emoncms.org", env) is None   # only https goes through it
    assert environ_proxy("https", "pi.lan", env) is None
    assert environ_proxy("https", "localhost", env) is None
    assert environ_proxy("http", "x", {"all_proxy": "p:8080"}).port == 8080
    assert environ_proxy("http", "x", {"all_proxy": "p:8080", "NO_PROXY": "*"}) is None


def test_https_checks_the_certificate_against_the_ca_file(tmp_path):
    certs = Certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_crt, certs.server_key)
    server = OneShotServer(close_after=False, tls=context)

    class Plain(HttpBuffer):
        pass
    buffer = Plain("h", {"active": True, "max_items": 0, "batch_size": 1, "retry_max": 1, "timeout": 5,
                         "verify_tls": True, "ca_file": ""})
    buffer.configure()
    with pytest.raises(AuthError, match="not trusted"):
        buffer.post(server.url, data=b"a")
    buffer.settings["ca_file"] = str(certs.ca_crt)
    buffer.configure()
    assert buffer.post(server.url, data=b"b").text == "ok"
    assert server.bodies == [b"b"]
    server.close()
