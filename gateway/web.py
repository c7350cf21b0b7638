"""The gateway's own web page: live status, node values and the config, behind a password.

Off unless ``[gateway] web_port`` is set. The server (``gateway.httpd``) serves plain
HTML/CSS/JS from ``gateway/web/`` and a small JSON API; the page polls ``/api/status`` while
it is visible. Its thread blocks in ``select`` between requests (no polling), so with the page
closed it costs no CPU; slow, oversized or too many requests are cut off without holding a
thread or memory. Status comes from the same snapshot function as ``/status`` (taken on the
event loop's thread); saving the config goes through the reload path, on the loop thread.

Access: the password is stored in the config as a salted PBKDF2 hash (``oemgateway
--hash-password``); a login gives a session cookie (HttpOnly, SameSite=Strict) and a CSRF
token that every change must send back in ``X-CSRF-Token``; login attempts are rate-limited
per client address (counted before the password is checked) and failures logged throttled.
"""

import base64
import collections
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from gateway.httpd import BoundedHTTPServer, BufferedRequestHandler
from gateway.logs import LogThrottle, RedactingFormatter, error_text
from gateway.webconfig import ConfigEditError, ConfigEditor

log = logging.getLogger("oemgateway.web")

STATIC = Path(__file__).with_name("web")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png"}
COOKIE = "oemgateway_session"
HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 200_000
SMALL_BODY = 4096           # bytes a request without a session may send (a login: ~100)
LARGE_BODY = 512 * 1024     # bytes a logged-in request may send (a config: see MAX_CONFIG_BYTES)
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "no-referrer"),
                    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"))


# -- passwords ------------------------------------------------------------------------------
def hash_password(password: str, iterations: int = HASH_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (base64): what ``web_password_hash`` holds."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join((HASH_SCHEME, str(iterations), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches a ``hash_password`` result; False for anything malformed."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != HASH_SCHEME:
            return False
        computed = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"),
                                       base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def session_token(headers) -> Optional[str]:
    """The session cookie's value in a request's headers, or None."""
    for part in (headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def _schedule(delay: float, fn: Callable[[], None]) -> threading.Timer:
    """Run ``fn`` once in ``delay`` seconds (a pending log summary)."""
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
    return timer


# -- sessions and login limits --------------------------------------------------------------
class Sessions:
    """Login sessions: a random cookie token -> its CSRF token, forgotten after ``ttl``
    seconds unused (checked when used: no timer)."""

    MAX = 32

    def __init__(self, ttl: float = 12 * 3600, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._sessions: "collections.OrderedDict[str, Tuple[str, float]]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = (csrf, self._clock())
            while len(self._sessions) > self.MAX:
                self._sessions.popitem(last=False)
        return token, csrf

    def csrf(self, token: Optional[str]) -> Optional[str]:
        """The session's CSRF token if ``token`` is a live session (its use is noted), else None."""
        with self._lock:
            entry = self._sessions.get(token or "")
            if entry is None:
                return None
            if self._clock() - entry[1] > self.ttl:
                del self._sessions[token]
                return None
            self._sessions[token] = (entry[0], self._clock())
            self._sessions.move_to_end(token)
            return entry[0]

    def drop(self, token: Optional[str]) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


class LoginLimiter:
    """At most ``attempts`` login attempts per client in ``window`` seconds, forgotten at the
    first success. An attempt is counted *before* its password is checked (``reserve``), so
    requests racing each other cannot get more checks than the limit. A client is an IPv4
    address, or an IPv6 /64 (what one household or one attacker holds)."""

    MAX_CLIENTS = 1024

    def __init__(self, attempts: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._attempts: Dict[str, List[float]] = {}
        self._lock = threading.Lock()

    def reserve(self, client: str) -> float:
        """Count an attempt by ``client`` and return 0 if it may be checked now; else the
        seconds until it may try again (nothing counted)."""
        key = _client_key(client)
        with self._lock:
            recent = self._recent(key)
            if len(recent) >= self.attempts:
                return max(0.0, recent[0] + self.window - self._clock())
            if len(self._attempts) > self.MAX_CLIENTS:
                self._attempts.pop(next(k for k in self._attempts if k != key))
            recent.append(self._clock())
            return 0.0

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._attempts.pop(_client_key(client), None)

    def _recent(self, key: str) -> List[float]:
        since = self._clock() - self.window
        recent = [t for t in self._attempts.get(key, ()) if t > since]
        self._attempts[key] = recent
        return recent


def _client_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64 network."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RecentLog(logging.Handler):
    """The last log lines, secrets redacted by the formatter given, for the page."""

    def __init__(self, formatter: logging.Formatter, size: int = 200):
        super().__init__()
        self.setFormatter(formatter)
        self._lines: "collections.deque[dict]" = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == log.name and record.levelno < logging.INFO:
            return   # the page's own requests: they would crowd out everything else
        try:
            self._lines.append({"time": record.created, "level": record.levelname,
                                "text": self.format(record)})
        except Exception:   # noqa: BLE001 - logging must never raise
            self.handleError(record)

    def lines(self, count: int = 50) -> dict:
        """``{"problems": last warnings and errors, "recent": last lines}``, oldest first."""
        lines = list(self._lines)
        problems = [line for line in lines if line["level"] in ("WARNING", "ERROR", "CRITICAL")]
        return {"problems": problems[-count:], "recent": lines[-count:]}


# -- the server -----------------------------------------------------------------------------
class WebApp:
    """What the page's requests do, independent of HTTP plumbing."""

    def __init__(self, take_snapshot: Callable[[], Optional[dict]], editor: ConfigEditor,
                 password_hash: Callable[[], str], apply_config: Callable[[], bool],
                 recent_log: Optional[RecentLog] = None):
        self.take_snapshot = take_snapshot
        self.editor = editor
        self.password_hash = password_hash
        self.apply_config = apply_config
        self.recent_log = recent_log
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        # A password-guessing run gives a handful of lines, each with its count.
        self.failed_logins = LogThrottle(log, logging.WARNING, 60.0, schedule=_schedule)
        self._saving = threading.Lock()   # one save at a time: check, write and apply together
        self._sessions_hash = password_hash()

    def csrf(self, token: Optional[str]) -> Optional[str]:
        """The CSRF token of a live session, else None. A new password ends every session."""
        current = self.password_hash()
        if current != self._sessions_hash:
            self.sessions.clear()
            self._sessions_hash = current
        return self.sessions.csrf(token)

    def login(self, client: str, password: str) -> Tuple[int, dict, Optional[str]]:
        """``(HTTP code, answer, new session token)``."""
        stored = self.password_hash()
        self.csrf(None)   # sessions of an older password end here too
        if not stored:
            return 403, {"error": "no password is set: put the output of `oemgateway "
                                  "--hash-password` in [gateway] web_password_hash"}, None
        wait = self.limiter.reserve(client)
        if wait:
            self.failed_logins("web page: login from %s refused: too many failed logins", client)
            return 429, {"error": f"too many failed logins: try again in {wait:.0f} s",
                         "retry_after": max(1, round(wait))}, None
        if not verify_password(password, stored):
            self.failed_logins("web page: failed login from %s", client)
            return 401, {"error": "wrong password"}, None
        self.limiter.succeeded(client)
        token, csrf = self.sessions.create()
        log.info("web page: login from %s", client)
        return 200, {"csrf": csrf}, token

    def status(self) -> Tuple[int, dict]:
        status = self.take_snapshot()
        if status is None:
            return 503, {"error": "the gateway's event loop is not answering"}
        if self.recent_log is not None:
            status["log"] = self.recent_log.lines()
        return 200, status

    def config(self) -> Tuple[int, dict]:
        try:
            return 200, {"path": self.editor.path, "text": self.editor.masked_text(),
                         "sections": self.editor.masked_sections()}
        except ConfigEditError as exc:
            return 200, {"path": self.editor.path, "text": self.editor.masked_text(),
                         "sections": {}, "problems": exc.problems}

    def check(self, body: dict) -> Tuple[int, dict]:
        answer = self.editor.check(str(body.get("text", "")))
        return (200 if answer["ok"] else 422), answer

    def save(self, body: dict) -> Tuple[int, dict]:
        return self._saved(lambda: self.editor.save(str(body.get("text", ""))))

    def edit_section(self, body: dict) -> Tuple[int, dict]:
        section, values = body.get("section"), body.get("values") or {}
        if not isinstance(section, list) or not isinstance(values, dict):
            return 400, {"error": "expected {section: [names], values: {key: value}, remove: bool}"}
        return self._saved(lambda: self.editor.edit_section(section, values, bool(body.get("remove"))))

    def _saved(self, save: Callable[[], dict]) -> Tuple[int, dict]:
        with self._saving:
            try:
                answer = save()
            except ConfigEditError as exc:
                return 422, {"ok": False, "problems": exc.problems, "warnings": []}
            except OSError as exc:
                return 500, {"ok": False, "problems": [{"message": f"cannot write the config: {exc}",
                                                        "line": None, "section": [], "key": None}]}
            answer["applied"] = bool(self.apply_config())
        log.info("web page: config saved%s", "" if answer["applied"] else " (not applied yet)")
        return 200, answer


class _Handler(BufferedRequestHandler):
    """HTTP plumbing: cookies, CSRF, JSON bodies and static files; the work is WebApp's."""

    server_version = "oemgateway"
    ROUTES = {("GET", "/api/status"): "status", ("GET", "/api/config"): "config",
              ("POST", "/api/config/check"): "check", ("POST", "/api/config"): "save",
              ("POST", "/api/config/section"): "edit_section"}

    @property
    def app(self) -> WebApp:
        return self.server.app   # type: ignore[attr-defined]

    def do_GET(self):   # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/api/session":
            csrf = self.app.csrf(self._cookie())
            return self._json(200, {"csrf": csrf}) if csrf else self._json(401, {"error": "log in"})
        if path.startswith("/api/"):
            return self._api("GET", path)
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

    def _api(self, method: str, path: str, body: Optional[dict] = None):
        action = self.ROUTES.get((method, path))
        if action is None:
            return self._json(404, {"error": "no such endpoint"})
        csrf = self.app.csrf(self._cookie())
        if csrf is None:
            return self._json(401, {"error": "log in"})
        if method == "POST" and not hmac.compare_digest(self.headers.get("X-CSRF-Token", ""), csrf):
            return self._json(403, {"error": "missing or wrong CSRF token"})
        code, answer = getattr(self.app, action)(body) if body is not None else getattr(self.app, action)()
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
        log.debug("web: " + format, *args)


class WebServer:
    """The page's HTTP server (``gateway.httpd``: one reading thread, a few workers, bounded
    connections, read times and bodies). A request without a live session may send at most
    SMALL_BODY bytes (a login needs a few hundred); a logged-in one LARGE_BODY (a config)."""

    def __init__(self, bind: str, port: int, app: WebApp):
        self.httpd = BoundedHTTPServer(bind, port, _Handler, self._body_limit, name="web", log=log)
        self.httpd.app = app   # type: ignore[attr-defined]

    @property
    def port(self) -> int:
        return self.httpd.port

    def _body_limit(self, method: str, path: str, headers) -> int:
        app: WebApp = self.httpd.app   # type: ignore[attr-defined]
        return LARGE_BODY if app.csrf(session_token(headers)) else SMALL_BODY

    def start(self) -> None:
        self.httpd.start()

    def close(self) -> None:
        self.httpd.close()
        self.httpd.app.failed_logins.flush()   # type: ignore[attr-defined]
        self._forget_log()

    def _forget_log(self) -> None:
        recent = self.httpd.app.recent_log   # type: ignore[attr-defined]
        if recent is not None:
            logging.getLogger().removeHandler(recent)


def serve_page(config, loader, take_snapshot: Callable[[], Optional[dict]], redactor,
               password_hash: Callable[[], str], apply_config: Callable[[], bool],
               data_folder: Optional[str] = None, protected: Sequence[str] = ()) -> Optional[WebServer]:
    """Start the page on ``[gateway] web_bind:web_port``; None (logged) if the port cannot be had.
    Files named by settings saved from the page must be under ``data_folder`` or a folder of
    ``[gateway] file_roots``, and never in ``protected`` (``gateway.fileroots``)."""
    bind, port = config.gateway["web_bind"], config.gateway["web_port"]
    recent = RecentLog(RedactingFormatter(redactor))
    editor = ConfigEditor(config.path, loader, data_folder, protected)
    app = WebApp(take_snapshot, editor, password_hash, apply_config, recent)
    try:
        server = WebServer(bind, port, app)
    except OSError as exc:
        log.error("cannot serve the web page on %s:%d: %s", bind, port, error_text(exc))
        return None
    logging.getLogger().addHandler(recent)
    server.start()
    log.info("web page on http://%s:%d/", bind if ":" not in bind else f"[{bind}]", port)
    if not config.gateway["web_password_hash"]:
        log.warning("[gateway] web_password_hash is not set: nobody can log in to the web page "
                    "(oemgateway --hash-password prints one)")
    if bind not in ("127.0.0.1", "::1", "localhost"):
        log.warning("the web page is open to the network on %s without TLS: passwords and the "
                    "config cross it in clear; put a TLS proxy in front of it", bind)
    return server


def read_password_hash() -> int:
    """``oemgateway --hash-password``: print the hash of a password read from the terminal
    (asked twice) or from one line of stdin; exit code 0, or 1 if they differ or are empty."""
    import getpass
    import sys
    if sys.stdin.isatty():
        password = getpass.getpass("Password for the web page: ")
        if getpass.getpass("Again: ") != password:
            print("oemgateway: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("oemgateway: an empty password is not allowed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0
