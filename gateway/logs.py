"""Logging for a daemon that runs for years: secrets redacted, repeated warnings throttled."""

import logging
import os
import re
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"
# The user and password of any URL (``scheme://user:pass@host``): group 2. The greedy part
# runs to the last ``@`` before the host's end, so a password holding an ``@`` is taken whole.
URL_USERINFO = re.compile(r"""(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#"'<>]*)@""")


def plural(count: int, noun: str, plural_form: str = "") -> str:
    """``1 listener``, ``2 listeners``, ``0 readings``: counts in log lines read as sentences."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


def error_text(exc: BaseException) -> str:
    """An error in words for a log line: an operating system's error as its reason and file,
    ``Permission denied: /var/lib/oemgateway``, not ``[Errno 13] Permission denied: '...'``; a
    wrapped one (urllib's ``<urlopen error ...>``) by what it wraps; others by their message."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return error_text(reason)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def mask_url_credentials(text: str, mask: str = MASK) -> str:
    """``text`` with the user and password of every URL in it replaced by ``mask``."""
    return URL_USERINFO.sub(lambda m: m.group(1) + mask + "@", text) if "@" in text else text


class Redactor:
    """Knows the secrets of the current config and masks them, and the credentials of any
    URL, in any text."""

    def __init__(self):
        self._secrets: tuple = ()
        self._lock = threading.Lock()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        cleaned = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        with self._lock:
            self._secrets = tuple(cleaned)

    def redact(self, text: str) -> str:
        text = mask_url_credentials(text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class RedactingFormatter(logging.Formatter):
    """Formats a record, traceback included, then masks every known secret in the result."""

    def __init__(self, redactor: Redactor, fmt: str = LOG_FORMAT):
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


def setup_logging(redactor: Redactor, logfile: Optional[str] = None, max_bytes: int = 5_000_000,
                  backups: int = 1, syslog: bool = False) -> None:
    """Send the root logger to stderr (journald under systemd), or to a rotating ``logfile``;
    and to the local syslog too if ``syslog``."""
    if logfile or syslog:
        from logging import handlers as log_handlers   # (only then: 0.6 MB of modules, pickle among them)
    if logfile:
        handlers: List[logging.Handler] = [log_handlers.RotatingFileHandler(
            logfile, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")]
    else:
        handlers = [logging.StreamHandler()]
    for handler in handlers:
        handler.setFormatter(RedactingFormatter(redactor))
    if syslog and os.path.exists("/dev/log"):
        handler = log_handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(RedactingFormatter(redactor, "oemgateway[%(process)d]: %(levelname)s %(name)s: %(message)s"))
        handlers.append(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        root.addHandler(handler)
    # The libraries' own lines (a connection pool's, a charset detector's per HTTP reply) are
    # noise to the gateway's user: only their warnings show, unless log_levels asks for more.
    root.setLevel(logging.WARNING)
    logging.getLogger(GATEWAY_LOGGER).setLevel(logging.INFO)


GATEWAY_LOGGER = "oemgateway"
LIBRARIES = ("urllib3", "requests", "charset_normalizer", "chardet", "paho", "serial", "pymodbus",
             "asyncio")
"""Libraries whose loggers ``log_levels`` may name as they are (``urllib3=DEBUG``)."""
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def apply_log_levels(default: str, per_component: Iterable[str]) -> List[str]:
    """Set the gateway's level and per-component levels: ``spool=DEBUG``, ``listener.rfm=WARNING``
    for the loggers ``oemgateway.spool``, ``oemgateway.listener.rfm``; a library's logger by its
    name, ``urllib3=DEBUG`` (libraries log only warnings otherwise). Levels set by an earlier
    config and not by this one are undone. Returns problems."""
    manager = logging.getLogger().manager
    for name in list(manager.loggerDict):
        if name.startswith(GATEWAY_LOGGER + ".") or name.split(".")[0] in LIBRARIES:
            logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger(GATEWAY_LOGGER).setLevel(default)
    levels, problems = parse_log_levels(per_component)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    return problems


def parse_log_levels(per_component: Iterable[str]) -> Tuple[Dict[str, str], List[str]]:
    """``log_levels`` as ``({logger name: level}, problems)``."""
    levels, problems = {}, []
    for item in per_component:
        name, _, level = item.partition("=")
        name, level = name.strip(), level.strip().upper()
        if not name or level not in LEVELS:
            problems.append(f"log_levels: '{item}' is not part=LEVEL (e.g. spool=DEBUG, urllib3=DEBUG; "
                            f"levels: {', '.join(LEVELS)}); it is ignored")
            continue
        levels[name if name.split(".")[0] in LIBRARIES else f"{GATEWAY_LOGGER}.{name}"] = level
    return levels, problems


class LogThrottle:
    """Logs the first occurrence of a kind of problem, then at most one summary per interval.

    A flood of bad frames or a day-long outage gives a handful of log lines, each saying how
    many occurrences it stands for, never one line per frame. ``schedule(delay, fn)``, when
    given, is used to emit a pending summary even if no further occurrence comes.
    """

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING,
                 interval: float = 60.0,
                 schedule: Optional[Callable[[float, Callable[[], None]], object]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.level = level
        self.interval = interval
        self._schedule = schedule
        self._clock = clock
        self._window_end = float("-inf")
        self._suppressed = 0
        self._latest = ""
        self._summary_pending = False
        self._lock = threading.Lock()

    def __call__(self, msg: str, *args) -> None:
        with self._lock:
            now = self._clock()
            if now < self._window_end:
                self._suppressed += 1
                self._latest = msg % args if args else msg
                if self._schedule and not self._summary_pending:
                    self._summary_pending = True
                    self._schedule(self._window_end - now, self._scheduled_flush)
                return
            self._emit_summary()
            self._window_end = now + self.interval
        self.logger.log(self.level, msg, *args)

    def flush(self) -> None:
        """Log the summary of what was suppressed, if anything was."""
        with self._lock:
            self._emit_summary()

    def reset(self) -> None:
        """The problem is over: log the summary, and log the next occurrence at once."""
        with self._lock:
            self._emit_summary()
            self._window_end = float("-inf")

    def _scheduled_flush(self) -> None:
        with self._lock:
            self._summary_pending = False
            if self._suppressed:
                self._emit_summary()
                self._window_end = self._clock() + self.interval

    def _emit_summary(self) -> None:
        if self._suppressed:
            self.logger.log(self.level, "... %d more like that in the last %d s (latest: %s)",
                            self._suppressed, self.interval, self._latest)
            self._suppressed = 0
