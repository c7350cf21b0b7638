"""What the web page's requests do, apart from HTTP: log in, show the live status (with each
destination's state in words and the inputs' history) and the recent log lines, show, check and
save the config, describe the Set up forms, test a destination or a device.

Status comes from the same snapshot function as ``/status`` (taken on the event loop's thread);
saving the config goes through the reload path, on the loop thread. Who may do what is
``gateway.web.auth``'s; the HTTP plumbing is ``gateway.web.server``'s.
"""

import collections
import logging
import os
import threading
import time
from typing import Callable, Optional, Sequence, Tuple

from gateway.logs import LogThrottle, RedactingFormatter
from gateway.web import forms, trial, watch
from gateway.web.auth import LoginLimiter, Sessions, verify_password
from gateway.web.configedit import ConfigConflict, ConfigEditError, ConfigEditor
from gateway.web.history import SLOTS, InputHistory

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
            self._lines.append({"time": record.created, "level": record.levelname, "source": record.name,
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
                 recent_log: Optional[RecentLog] = None, history: Optional[InputHistory] = None,
                 skipped: Optional[Callable[[object], frozenset]] = None):
        self.take_snapshot = take_snapshot
        self.editor = editor
        self.password_hash = password_hash
        self.apply_config = apply_config
        self.recent_log = recent_log
        self.history = history if history is not None else InputHistory()
        self.skipped = skipped   # the buffers a frame is not for (routing), or None: every buffer
        self.rates = watch.DeliveryRates()
        self._forms: Optional[dict] = None
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

    def status(self, params: Optional[dict] = None) -> Tuple[int, dict]:
        status = self.take_snapshot()
        if status is None:
            return 503, {"error": "the gateway's event loop is not answering"}
        if self.recent_log is not None:
            status["log"] = self.recent_log.lines()
        rates = self.rates.update(status["buffers"])
        for name, b in status["buffers"].items():
            b.update(watch.destination_state(b, rates.get(name)))
        intervals, last = self.history.intervals(), self.history.last_frames()
        for node, n in status["nodes"].items():
            n["interval_s"] = intervals.get(node)
            frame = last.get(node)
            n["not_for"] = sorted(self.skipped(frame)) if frame is not None and self.skipped else []
        try:
            status["config_version"] = self.editor.version()
        except OSError:
            status["config_version"] = None
        return 200, status

    def history_series(self, params: Optional[dict] = None) -> Tuple[int, dict]:
        """``?node=N&minutes=M``: the inputs' means per minute (every node without ``node``)."""
        params = params or {}
        try:
            minutes = int(params.get("minutes", SLOTS))
        except ValueError:
            return 400, {"error": "minutes must be a whole number"}
        return 200, {"nodes": self.history.series(time.time(), minutes, params.get("node"))}

    def forms(self, params: Optional[dict] = None) -> Tuple[int, dict]:
        """Every plugin type's form (``gateway.web.forms``), built once."""
        if self._forms is None:
            self._forms = forms.forms(self.editor.loader.registries)
        return 200, self._forms

    def config(self, params: Optional[dict] = None) -> Tuple[int, dict]:
        text = self.editor.read()
        version = self.editor.version(text)
        try:
            return 200, {"path": self.editor.path, "text": self.editor.masked_text(),
                         "sections": self.editor.masked_sections(), "version": version}
        except ConfigEditError as exc:
            return 200, {"path": self.editor.path, "text": self.editor.masked_text(),
                         "sections": {}, "problems": exc.problems, "version": version}

    def check(self, body: dict) -> Tuple[int, dict]:
        answer = self.editor.check(str(body.get("text", "")))
        return (200 if answer["ok"] else 422), answer

    def check_section(self, body: dict) -> Tuple[int, dict]:
        """A form's values checked as ``--check`` would check the file they would make; nothing
        is saved."""
        section, values = body.get("section"), body.get("values") or {}
        if not isinstance(section, list) or not isinstance(values, dict):
            return 400, {"error": "expected {section: [names], values: {key: value}}"}
        try:
            answer = self.editor.check(self.editor.section_text(section, values))
        except ConfigEditError as exc:
            answer = {"ok": False, "problems": exc.problems, "warnings": []}
        return (200 if answer["ok"] else 422), answer

    def save(self, body: dict) -> Tuple[int, dict]:
        return self._saved(lambda: self.editor.save(str(body.get("text", "")), body.get("version")))

    def edit_section(self, body: dict) -> Tuple[int, dict]:
        section, values = body.get("section"), body.get("values") or {}
        if not isinstance(section, list) or not isinstance(values, dict):
            return 400, {"error": "expected {section: [names], values: {key: value}, remove: bool}"}
        return self._saved(lambda: self.editor.edit_section(section, values, bool(body.get("remove")),
                                                            body.get("version")))

    def test(self, body: dict) -> Tuple[int, dict]:
        """Test a listener's device or a buffer's destination with a form's (unsaved) values."""
        section, values = body.get("section"), body.get("values") or {}
        if (not isinstance(section, list) or len(section) != 2 or section[0] not in ("listeners", "buffers")
                or not isinstance(values, dict)):
            return 400, {"error": "expected {section: [listeners|buffers, name], values: {key: value}}"}
        try:
            text = self.editor.unmask(self.editor.section_text(section, values))
            config, _ = self.editor.load(text)
        except ConfigEditError as exc:
            return 422, {"ok": False, "message": "fix the problems first", "problems": exc.problems}
        kind, name = section
        plugin = getattr(config, kind)[name]
        if kind == "buffers":
            answer = trial.test_destination(plugin.cls, name, plugin.settings)
        else:
            status = self.take_snapshot() or {}
            running = status.get("listeners", {}).get(name)
            answer = trial.test_device(plugin.cls, name, plugin.settings, running)
        [scrubbed] = self.editor.scrubbed([{"message": answer["message"]}], text)   # no secret in the answer
        answer["message"] = scrubbed["message"]
        log.info("web page: test of %s '%s': %s", kind[:-1], name, "ok" if answer["ok"] else "failed")
        return 200, answer

    def _saved(self, save: Callable[[], dict]) -> Tuple[int, dict]:
        with self._saving:
            try:
                answer = save()
            except ConfigConflict as exc:
                return 409, {"ok": False, "conflict": True, "error": str(exc), "problems": [], "warnings": []}
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
             data_folder: Optional[str] = None, protected: Sequence[str] = (),
             history: Optional[InputHistory] = None, skipped=None) -> WebApp:
    """The page of the gateway running ``config``, its recent log lines collected from now on.
    Files named by settings saved from the page must be under ``data_folder`` or a folder of
    ``[gateway] file_roots``, and never in ``protected`` (``gateway.fileroots``). ``skipped(frame)``:
    the buffers a frame is not for (``gateway.routing``). Backups of the
    config go to ``config-backups`` in the state folder (``data_folder``, else
    ``[gateway] state_dir``'s)."""
    recent = RecentLog(RedactingFormatter(redactor))
    logging.getLogger().addHandler(recent)
    state = data_folder or _state_folder(config)
    backups = os.path.join(state, "config-backups") if state else None
    return WebApp(take_snapshot, ConfigEditor(config.path, loader, data_folder, protected, backups),
                  password_hash, apply_config, recent, history, skipped)


def _state_folder(config) -> Optional[str]:
    """The gateway's state folder, or None (logged: saves then keep no backup) if none is usable."""
    from gateway.spool import state_dir
    try:
        return state_dir(config.gateway["state_dir"])
    except Exception as exc:   # noqa: BLE001 - UnsafeFolderError, OSError: said, and the page works on
        log.warning("web page: no state folder for backups of the config (%s): saves keep none", exc)
        return None
