"""What the web page's requests do, apart from HTTP: log in, show the live status and the
recent log lines, show, check and save the config.

Status comes from the same snapshot function as ``/status`` (taken on the event loop's thread);
saving the config goes through the reload path, on the loop thread. Who may do what is
``gateway.web.auth``'s; the HTTP plumbing is ``gateway.web.server``'s.
"""

import collections
import logging
import threading
from typing import Callable, Optional, Sequence, Tuple

from gateway.logs import LogThrottle, RedactingFormatter
from gateway.web.auth import LoginLimiter, Sessions, verify_password
from gateway.web.configedit import ConfigEditError, ConfigEditor

log = logging.getLogger("oemgateway.web")


def _schedule(delay: float, fn: Callable[[], None]) -> threading.Timer:
    """Run ``fn`` once in ``delay`` seconds (a pending log summary)."""
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
    return timer


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

    def close(self) -> None:
        """Log the failed logins not yet told, and stop collecting log lines."""
        self.failed_logins.flush()
        if self.recent_log is not None:
            logging.getLogger().removeHandler(self.recent_log)

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

def page_app(config, loader, take_snapshot: Callable[[], Optional[dict]], redactor,
             password_hash: Callable[[], str], apply_config: Callable[[], bool],
             data_folder: Optional[str] = None, protected: Sequence[str] = ()) -> WebApp:
    """The page of the gateway running ``config``, its recent log lines collected from now on.
    Files named by settings saved from the page must be under ``data_folder`` or a folder of
    ``[gateway] file_roots``, and never in ``protected`` (``gateway.fileroots``)."""
    recent = RecentLog(RedactingFormatter(redactor))
    logging.getLogger().addHandler(recent)
    return WebApp(take_snapshot, ConfigEditor(config.path, loader, data_folder, protected),
                  password_hash, apply_config, recent)
