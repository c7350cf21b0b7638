"""The gateway's one HTTP server: ``/status`` and ``/metrics`` for monitoring, the web page and
its JSON API for people.

One ``BoundedHTTPServer`` (``gateway.web.httpd``: one reading thread blocked in ``select``, a
few workers, bounded connections, read times and bodies) listens on up to two addresses, each
with its own routes (the ``[gateway]`` keys are documented in ``gateway.web``):

- ``status_bind:status_port``: ``GET /status`` (JSON) and ``GET /metrics`` (Prometheus text),
  with no login, for monitoring systems and ``oemgateway --status``; no request body accepted;
- ``web_bind:web_port``: the page (``static/``) and ``/api/...``, behind the login
  (``gateway.web.auth``). A request without a live session may send at most SMALL_BODY bytes
  (a login needs a few hundred); a logged-in one LARGE_BODY (a config).

Two addresses rather than one, because the two have different readers: a Prometheus server must
read ``/metrics`` without a password, and the page must not be reachable where only monitoring
should be (or the reverse).
"""

import hmac
import json
import logging
import urllib.parse
from pathlib import Path
from typing import Callable, Optional, Tuple

from gateway.logs import error_text
from gateway.web.auth import COOKIE, session_token
from gateway.web.httpd import BoundedHTTPServer, BufferedRequestHandler
from gateway.web.status import prometheus

log = logging.getLogger("oemgateway.web")
status_log = logging.getLogger("oemgateway.status")

STATIC = Path(__file__).with_name("static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png"}
SMALL_BODY = 4096           # bytes a request without a session may send (a login: ~100)
LARGE_BODY = 512 * 1024     # bytes a logged-in request may send (a config: see MAX_CONFIG_BYTES)
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "no-referrer"),
                    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"))


class _Handler(BufferedRequestHandler):
    """What both addresses share: one way to answer, and logging at debug level."""

    server_version = "oemgateway"
    logger, log_prefix = log, "web: "

    def _send(self, code: int, content_type: str, body: bytes, header: Optional[Tuple[str, str]] = None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS + ((header,) if header else ()):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):   # noqa: A002
        self.logger.debug(self.log_prefix + format, *args)


class StatusHandler(_Handler):
    """GET /status and GET /metrics: no login, so anyone who reaches the address may try them."""

    logger, log_prefix = status_log, "status: "

    def do_GET(self):   # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path not in ("/status", "/metrics"):
            return self._send(404, "text/plain", b"not found: try /status or /metrics\n")
        status = self.server.take_snapshot()
        if status is None:
            return self._send(503, "text/plain", b"the gateway's event loop is not answering\n")
        if path == "/status":
            return self._send(200, "application/json", json.dumps(status, indent=1).encode())
        return self._send(200, "text/plain; version=0.0.4", prometheus(status).encode())


class PageHandler(_Handler):
    """The page: cookies, CSRF, JSON bodies and static files; the work is WebApp's."""

    ROUTES = {("GET", "/api/status"): "status", ("GET", "/api/config"): "config",
              ("GET", "/api/history"): "history_series", ("GET", "/api/forms"): "forms",
              ("POST", "/api/config/check"): "check", ("POST", "/api/config"): "save",
              ("POST", "/api/config/section"): "edit_section",
              ("POST", "/api/config/section/check"): "check_section", ("POST", "/api/test"): "test"}

    @property
    def app(self):
        return self.server.app

    def do_GET(self):   # noqa: N802 - http.server's naming
        path, _, query = self.path.partition("?")
        if path == "/api/session":
            csrf = self.app.csrf(self._cookie())
            return self._json(200, {"csrf": csrf}) if csrf else self._json(401, {"error": "log in"})
        if path.startswith("/api/"):
            return self._api("GET", path, params=dict(urllib.parse.parse_qsl(query)))
        return self._static(path)

    def do_POST(self):   # noqa: N802
        path = self.path.split("?", 1)[0]
        body = self._body()
        if body is None:
            return None
        if path == "/api/login":
            code, answer, token = self.app.login(self.client_address[0], str(body.get("password", "")))
            return self._json(code, answer, token and self._session_cookie(token, int(self.app.sessions.ttl)))
        if path == "/api/logout":
            self.app.sessions.drop(self._cookie())
            return self._json(200, {}, self._session_cookie("", 0))
        return self._api("POST", path, body)

    def _api(self, method: str, path: str, body: Optional[dict] = None, params: Optional[dict] = None):
        action = self.ROUTES.get((method, path))
        if action is None:
            return self._json(404, {"error": "no such endpoint"})
        csrf = self.app.csrf(self._cookie())
        if csrf is None:
            return self._json(401, {"error": "log in"})
        if method == "POST" and not hmac.compare_digest(self.headers.get("X-CSRF-Token", ""), csrf):
            return self._json(403, {"error": "missing or wrong CSRF token"})
        code, answer = getattr(self.app, action)(body if body is not None else params)
        return self._json(code, answer)

    def _body(self) -> Optional[dict]:
        """The JSON object sent (its size was bounded before it was read), or None (answered 400)."""
        length = int(self.headers.get("Content-Length") or "0")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(400, {"error": "expected a JSON object"})
            return None
        return body

    def _cookie(self) -> Optional[str]:
        return session_token(self.headers)

    def _session_cookie(self, token: str, max_age: int) -> Tuple[str, str]:
        secure = "; Secure" if self.headers.get("X-Forwarded-Proto", "").lower() == "https" else ""
        return ("Set-Cookie", f"{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; "
                              f"SameSite=Strict{secure}")

    def _static(self, path: str):
        name = "index.html" if path == "/" else path.lstrip("/")
        file = STATIC / name
        if "/" in name or file.suffix not in STATIC_TYPES or not file.is_file():
            return self._send(404, "text/plain", b"not found\n")
        return self._send(200, STATIC_TYPES[file.suffix], file.read_bytes())

    def _json(self, code: int, answer: dict, header: Optional[Tuple[str, str]] = None):
        return self._send(code, "application/json", json.dumps(answer, default=str).encode(), header)


class GatewayServer(BoundedHTTPServer):
    """The one server: the status address and/or the page's address, as the config asks. Its
    handlers find here the snapshot function and the page's ``WebApp``."""

    def __init__(self, take_snapshot: Callable[[], Optional[dict]]):
        super().__init__(name="http", log=log)
        self.take_snapshot = take_snapshot
        self.app = None
        self.addresses = 0

    def serve_status(self, bind: str, port: int) -> bool:
        """Listen for /status and /metrics on ``bind:port``; False (logged) if it cannot be had."""
        try:
            self.listen(bind, port, StatusHandler, lambda method, path, headers: 0)
        except OSError as exc:
            status_log.error("cannot serve the status on %s:%d: %s", bind, port, error_text(exc))
            return False
        self.addresses += 1
        status_log.info("status on http://%s:%d/status and /metrics", bind, port)
        return True

    def serve_page(self, bind: str, port: int, app) -> bool:
        """Listen for the page (a ``WebApp``) on ``bind:port``; False (logged) if it cannot be had."""
        try:
            self.listen(bind, port, PageHandler, self._page_body_limit)
        except OSError as exc:
            log.error("cannot serve the web page on %s:%d: %s", bind, port, error_text(exc))
            return False
        self.app = app
        self.addresses += 1
        log.info("web page on http://%s:%d/", bind if ":" not in bind else f"[{bind}]", port)
        return True

    def _page_body_limit(self, method: str, path: str, headers) -> int:
        return LARGE_BODY if self.app.csrf(session_token(headers)) else SMALL_BODY

    def close(self) -> None:
        super().close()
        if self.app is not None:
            self.app.close()


def serve(gateway_settings: dict, take_snapshot: Callable[[], Optional[dict]], page: Callable[[], object]
          ) -> Optional[GatewayServer]:
    """Start the server on the addresses ``[gateway]`` asks for (``gateway_settings``); None if
    it asks for none or none can be had (logged). ``page()`` builds the page's ``WebApp``,
    called only if the page is on."""
    settings = gateway_settings
    if not settings["status_port"] and not settings["web_port"]:
        return None
    server = GatewayServer(take_snapshot)
    if settings["status_port"]:
        server.serve_status(settings["status_bind"], settings["status_port"])
    if settings["web_port"]:
        app = page()
        if not server.serve_page(settings["web_bind"], settings["web_port"], app):
            app.close()
        else:
            _warn_about_page(settings)
    if not server.addresses:
        server.close()
        return None
    server.start()
    return server


def _warn_about_page(settings: dict) -> None:
    if not settings["web_password_hash"]:
        log.warning("[gateway] web_password_hash is not set: nobody can log in to the web page "
                    "(oemgateway --hash-password prints one)")
    if settings["web_bind"] not in ("127.0.0.1", "::1", "localhost"):
        log.warning("the web page is open to the network on %s without TLS: passwords and the "
                    "config cross it in clear; put a TLS proxy in front of it", settings["web_bind"])
