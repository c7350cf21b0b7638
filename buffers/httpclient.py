"""A small HTTP/1.1 client on the standard library: what the HTTP buffers need of one.

POST with kept-alive connections (one per server), a timeout, TLS with certificate checks
(``ssl`` is imported only for an ``https://`` URL), and the environment's proxies
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) looked up once per URL. Redirects
are not followed. It replaces ``requests`` (with ``urllib3``, ``charset_normalizer``, ``idna``
and ``certifi``): about 15 MB of a daemon that otherwise needs 20, and a third of the CPU a
bulk post cost; and it is not ``http.client``, which imports ``ssl`` and ``email`` (6 MB)
and parses every answer's headers with ``email``. Transport failures are raised as they come,
all ``OSError``: refused, reset, timed out, a TLS error, ``ProtocolError`` for an answer that
is not HTTP; ``buffers.http`` words them.
"""

import base64
import json
import os
import select
import socket
import urllib.parse
from typing import Dict, Mapping, Optional, Tuple, Union

Body = Union[None, bytes, str, Mapping[str, str]]


class Reply:
    """What the server answered: ``status_code``, ``reason``, ``headers`` (case-insensitive
    ``get``), the body as ``content`` bytes or ``text``, ``json()``, and the ``url`` asked."""

    __slots__ = ("url", "status_code", "reason", "headers", "content")

    def __init__(self, url: str, status_code: int, reason: str, headers, content: bytes):
        self.url = url
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body decoded with the charset the server declared (UTF-8 when it declared none)."""
        charset = "utf-8"
        for param in self.headers.get("Content-Type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.content.decode(charset, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    def json(self):
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.text)


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.x."""


class Headers(dict):
    """Response headers by lower-case name; ``get`` takes any case."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


class HttpClient:
    """POSTs over kept-alive connections. ``headers`` go with every request; ``verify``: check
    the server's certificate (True), against a CA file (its path), or not at all (False)."""

    def __init__(self, user_agent: str):
        self.headers: Dict[str, str] = {"User-Agent": user_agent}
        self.verify: Union[bool, str] = True
        self._connections: Dict[Tuple, "Connection"] = {}
        self._proxies: Dict[Tuple[str, str], Optional[urllib.parse.SplitResult]] = {}
        self._tls = None   # (verify, ssl.SSLContext)

    def post(self, url: str, data: Body = None, headers: Optional[Mapping[str, str]] = None,
             params: Optional[Mapping[str, str]] = None, auth: Optional[Tuple[str, str]] = None,
             timeout: float = 10.0) -> Reply:
        """POST ``data`` (bytes, text, or a form's fields) to ``url`` with ``params`` added to
        its query; ``auth``: (user, password) sent as HTTP Basic authentication."""
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        sent_headers = dict(self.headers)
        if isinstance(data, Mapping):
            data = urllib.parse.urlencode(data)
            sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if isinstance(data, str):
            data = data.encode("utf-8")
        sent_headers.update(headers or {})
        if auth is not None:
            sent_headers["Authorization"] = _basic(*auth)
        parts = urllib.parse.urlsplit(url)
        key, connection, target = self._connection(parts, timeout, sent_headers)
        try:
            status, reason, reply_headers, content, keep = connection.exchange(target, sent_headers, data or b"")
        except BaseException:
            self._forget(key)
            raise
        if not keep:
            self._forget(key)
        return Reply(url, status, reason, reply_headers, content)

    def close(self) -> None:
        for key in list(self._connections):
            self._forget(key)

    # -- connections ----------------------------------------------------------------------
    def _connection(self, parts: urllib.parse.SplitResult, timeout: float, headers: Dict[str, str]):
        """(key, a connection to use, the request target) for ``parts``: the kept-alive one
        when it is still good, else a new one (through the proxy the environment names)."""
        scheme = (parts.scheme or "").lower()
        if scheme not in ("http", "https"):
            raise ProtocolError(f"not an http:// or https:// URL: {scheme}://")
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        default_port = port == (443 if scheme == "https" else 80)
        headers["Host"] = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
        proxy = self._proxy_for(scheme, host)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if proxy is not None and scheme == "http":
            target = f"http://{headers['Host']}{target}"
            authorization = _proxy_authorization(proxy)
            if authorization:
                headers["Proxy-Authorization"] = authorization
        key = (scheme, host, port, self.verify)
        connection = self._connections.get(key)
        if connection is not None and connection.dropped():
            self._forget(key)
            connection = None
        if connection is None:
            connection = self._connections[key] = Connection(
                scheme, host, port, proxy, self._tls_context() if scheme == "https" else None)
        connection.timeout = timeout
        return key, connection, target

    def _tls_context(self):
        """The TLS context for ``verify`` (made once; ``ssl`` is imported only here)."""
        if self._tls is None or self._tls[0] != self.verify:
            import ssl
            if self.verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)
            self._tls = (self.verify, context)
        return self._tls[1]

    def _forget(self, key: Tuple) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()

    def _proxy_for(self, scheme: str, host: str) -> Optional[urllib.parse.SplitResult]:
        found = self._proxies.get((scheme, host), False)
        if found is False:
            found = self._proxies[(scheme, host)] = environ_proxy(scheme, host, os.environ)
        return found


class Connection:
    """One HTTP/1.1 connection to a server (or through a proxy), opened on the first request.

    A request goes out in one write; the answer is read by its ``Content-Length``, in chunks
    (``Transfer-Encoding: chunked``), or to the end of the stream."""

    MAX_LINE = 65536
    MAX_HEADERS = 100

    def __init__(self, scheme: str, host: str, port: int, proxy: Optional[urllib.parse.SplitResult], tls):
        self.host, self.port, self.proxy, self.tls = host, port, proxy, tls
        self.timeout = 10.0
        self.sock: Optional[socket.socket] = None
        self.reader = None

    def exchange(self, target: str, headers: Mapping[str, str], body: bytes):
        """Send one request, read its answer: (status, reason, headers, body, keep-alive)."""
        if self.sock is None:
            self._open()
        else:
            self.sock.settimeout(self.timeout)
        head = [f"POST {target} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        while True:
            version, status, reason = self._status_line()
            reply_headers = self._headers()
            if status >= 200:
                break   # (a 1xx is followed by the real answer)
        content, to_the_end = self._body(status, reply_headers)
        connection = reply_headers.get("connection", "").lower()
        keep = not to_the_end and "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
        return status, reason, reply_headers, content, keep

    def dropped(self) -> bool:
        """Whether the server closed this kept-alive connection meanwhile (it then reads as
        ready: the end of the stream), so a request is not written into a dead connection."""
        if self.sock is None:
            return False
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    def _open(self) -> None:
        proxy = self.proxy
        where = (proxy.hostname, proxy.port or 80) if proxy is not None else (self.host, self.port)
        sock = socket.create_connection(where, timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                if proxy is not None:
                    _tunnel(sock, self.host, self.port, _proxy_authorization(proxy))
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.reader = sock.makefile("rb")

    def _line(self) -> bytes:
        line = self.reader.readline(self.MAX_LINE + 1)
        if len(line) > self.MAX_LINE:
            raise ProtocolError("a line of the answer is too long")
        return line

    def _status_line(self) -> Tuple[str, int, str]:
        line = self._line()
        if not line:
            raise ConnectionResetError("the server closed the connection without answering")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
            raise ProtocolError(f"not an HTTP answer: {line[:40]!r}")
        return version, int(code), reason.strip()

    def _headers(self) -> Headers:
        headers = Headers()
        for _ in range(self.MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raise ProtocolError("too many header lines in the answer")

    def _body(self, status: int, headers: Headers) -> Tuple[bytes, bool]:
        """(the body, whether it ran to the end of the stream)."""
        if status in (204, 304):
            return b"", False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = self._line().split(b";")[0].strip()
                try:
                    length = int(size, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size[:20]!r}") from None
                if length == 0:
                    while self._line() not in (b"\r\n", b"\n", b""):
                        pass   # trailers
                    return b"".join(chunks), False
                chunks.append(self._exactly(length))
                self._line()
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length[:20]!r}")
            return self._exactly(int(length)), False
        return self.reader.read(), True

    def _exactly(self, length: int) -> bytes:
        data = self.reader.read(length)
        if len(data) < length:
            raise ConnectionResetError("the server closed the connection in the middle of its answer")
        return data


def _tunnel(sock: socket.socket, host: str, port: int, authorization: Optional[str]) -> None:
    """Ask an HTTP proxy for a tunnel to ``host:port`` (CONNECT), for TLS to go through it."""
    request = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if authorization:
        request += f"Proxy-Authorization: {authorization}\r\n"
    sock.sendall((request + "\r\n").encode("latin-1"))
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1)
        if not chunk or len(answer) > 65536:
            raise ConnectionResetError("the proxy closed the connection")
        answer += chunk
    status = answer.split(b" ", 2)[1:2]
    if status != [b"200"]:
        raise ProtocolError(f"the proxy refused the tunnel: {answer.splitlines()[0][:80]!r}")


def environ_proxy(scheme: str, host: str, environ: Mapping[str, str]) -> Optional[urllib.parse.SplitResult]:
    """The proxy ``environ`` names for ``scheme://host`` (``https_proxy``, ``all_proxy``, in
    lower or upper case), or None when there is none or ``no_proxy`` lists the host."""
    def get(name: str) -> str:
        return environ.get(name) or environ.get(name.upper()) or ""

    proxy = get(f"{scheme}_proxy") or get("all_proxy")
    if not proxy:
        return None
    for entry in get("no_proxy").replace(" ", "").split(","):
        entry = entry.lstrip(".").rsplit(":", 1)[0] if entry != "*" else entry
        if entry and (entry == "*" or host == entry or host.endswith("." + entry)):
            return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    return urllib.parse.urlsplit(proxy)


def _proxy_authorization(proxy: urllib.parse.SplitResult) -> Optional[str]:
    if proxy.username is None:
        return None
    return _basic(urllib.parse.unquote(proxy.username), urllib.parse.unquote(proxy.password or ""))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
