"""A small HTTP/1.1 client on the standard library: what the HTTP buffers need of one.

POST with kept-alive connections (one per server), a timeout, TLS with certificate checks
(``ssl`` is imported only for an ``https://`` URL), and the environment's proxies
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) looked up once per URL. Redirects
are not followed. It replaces ``requests`` (with ``urllib3``, ``charset_normalizer``, ``idna``
and ``certifi``): about 15 MB of a daemon that otherwise needs 20, and a third of the CPU a
bulk post cost. Transport failures are raised as they come (``OSError``: refused, reset, timed
out, a TLS error; ``http.client.HTTPException``: a broken answer); ``buffers.http`` words them.
"""

import base64
import http.client
import json
import os
import select
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


class HttpClient:
    """POSTs over kept-alive connections. ``headers`` go with every request; ``verify``: check
    the server's certificate (True), against a CA file (its path), or not at all (False)."""

    def __init__(self, user_agent: str):
        self.headers: Dict[str, str] = {"User-Agent": user_agent}
        self.verify: Union[bool, str] = True
        self._connections: Dict[Tuple, http.client.HTTPConnection] = {}
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
            connection.request("POST", target, body=data or b"", headers=sent_headers)
            response = connection.getresponse()
            content = response.read()
        except BaseException:
            self._forget(key)
            raise
        if response.will_close:
            self._forget(key)
        return Reply(url, response.status, response.reason, response.headers, content)

    def close(self) -> None:
        for key in list(self._connections):
            self._forget(key)

    # -- connections ----------------------------------------------------------------------
    def _connection(self, parts: urllib.parse.SplitResult, timeout: float, headers: Dict[str, str]):
        """(key, a connection to use, the request target) for ``parts``: the kept-alive one
        when it is still good, else a new one (through the proxy the environment names)."""
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise http.client.InvalidURL(f"not an http:// or https:// URL: {scheme}://")
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        proxy = self._proxy_for(scheme, host)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if proxy is not None and scheme == "http":
            target = urllib.parse.urlunsplit((scheme, parts.netloc.rpartition("@")[2], parts.path or "/",
                                              parts.query, ""))
            authorization = _proxy_authorization(proxy)
            if authorization:
                headers["Proxy-Authorization"] = authorization
        key = (scheme, host, port, self.verify)
        connection = self._connections.get(key)
        if connection is not None and _dropped(connection):
            self._forget(key)
            connection = None
        if connection is None:
            connection = self._open(scheme, host, port, proxy, timeout)
            self._connections[key] = connection
        elif connection.timeout != timeout:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        return key, connection, target

    def _open(self, scheme: str, host: str, port: int, proxy, timeout: float) -> http.client.HTTPConnection:
        where = (proxy.hostname, proxy.port or (443 if proxy.scheme == "https" else 80)) if proxy else (host, port)
        if scheme == "http":
            return http.client.HTTPConnection(*where, timeout=timeout)
        connection = http.client.HTTPSConnection(*where, timeout=timeout, context=self._tls_context())
        if proxy is not None:
            authorization = _proxy_authorization(proxy)
            connection.set_tunnel(host, port, {"Proxy-Authorization": authorization} if authorization else None)
        return connection

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


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection was closed by the server meanwhile (it then reads as
    ready: the end of the stream), so a request is not written into a dead connection."""
    sock = connection.sock
    if sock is None:
        return False   # not connected yet: http.client connects on the request
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
