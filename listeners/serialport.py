"""The serial layer every serial listener shares: open, read, reopen and write, on the loop.

A port (a device path, or any pyserial URL: ``socket://``, ``rfc2217://``, ``loop://``) is
opened non-blocking and exclusively, and its file descriptor is watched by the daemon's event
loop: nothing blocks and no thread polls. A port that is missing, vanishes (USB unplug) or
fails is reopened with backoff, 1 s doubling to 30 s: one WARNING when it goes, one INFO when
it is back. Optionally, a port that sends nothing for ``idle_timeout`` seconds is reopened.
Commands to the device go through a queue that writes them one at a time, each followed by the
pause the device needs, on loop timers.

A subclass turns lines into frames (``handle_text``) and may react to ``port_opened()`` and
``port_closed()``; it is about its device's protocol, not about ports.
"""

import errno
import os
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import serial

from gateway.backoff import Backoff
from gateway.eventloop import EventLoop, Timer
from gateway.lines import BadLine, LineSplitter, split_first_line
from listeners.base import Listener

RETRY_MIN = 1.0          # seconds before the first reopen attempt; doubles up to RETRY_MAX
RETRY_MAX = 30.0
READ_SIZE = 4096
POLL_INTERVAL = 0.05     # ports without a file descriptor (loop://, rfc2217://) are read on a timer
OPEN_SETTLE = 0.1        # bytes this soon after opening may be the tail of a line begun before
GARBLED_HINT_AFTER = 3   # lines of non-UTF-8 bytes in a row before suggesting a wrong com_baud
URL_SCHEMES = ("socket", "rfc2217", "loop", "spy", "alt", "hwgrep", "cp2110")


@dataclass
class PortStats:
    opens: int = 0
    losses: int = 0
    idle_reopens: int = 0
    bytes_in: int = 0
    commands_sent: int = 0
    commands_dropped: int = 0


@dataclass
class _Outage:
    """Why and since when the port is unusable (None while it works)."""

    since: float
    kind: str    # of the last failure: missing, busy, denied, error; "lost" until the first
    attempts: int = 0


class CommandQueue:
    """Writes commands one at a time, waiting after each the pause it asks for, on loop timers.

    ``write(data)`` returns the number of bytes the port took (the rest is retried shortly), or
    None when the port failed: the owner then clears the queue.
    """

    LIMIT = 100
    RETRY_PARTIAL = 0.01

    def __init__(self, loop: EventLoop, write: Callable[[bytes], Optional[int]]):
        self.loop = loop
        self._write = write
        self._queue: deque = deque()
        self._ready_at = 0.0
        self._timer: Optional[Timer] = None

    def put(self, data: bytes, gap: float) -> bool:
        """Queue ``data``, to be followed by ``gap`` seconds of silence; False if the queue is full."""
        if len(self._queue) >= self.LIMIT:
            return False
        self._queue.append([data, gap])
        self._kick()
        return True

    def clear(self) -> int:
        """Forget every queued command; returns how many there were."""
        dropped = len(self._queue)
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return dropped

    def __len__(self) -> int:
        return len(self._queue)

    def _kick(self) -> None:
        if self._timer is None and self._queue:
            self._timer = self.loop.call_later(self._ready_at - time.monotonic(), self._write_next)

    def _write_next(self) -> None:
        self._timer = None
        if not self._queue:
            return
        entry = self._queue[0]
        written = self._write(entry[0])
        if written is None:
            return
        if written < len(entry[0]):
            entry[0] = entry[0][written:]
            self._ready_at = time.monotonic() + self.RETRY_PARTIAL
        else:
            self._queue.popleft()
            self._ready_at = time.monotonic() + entry[1]
        self._kick()


class SerialPortListener(Listener):
    """A listener reading lines from a serial port that may come and go."""

    SPEC = """
    com_port = string(default='/dev/ttyUSB0')
    com_baud = integer(min=50, max=4000000, default=9600)
    idle_timeout = float(min=0, max=604800, default=0)
    """
    SAMPLE_COMMON = """
    # Settings every serial listener (serial, rfm2pi, rfm12pi) has:
    #   com_port       the device, e.g. /dev/ttyUSB0 (better: its stable /dev/serial/by-id/...
    #                  name), or a pyserial URL: socket://host:port, rfc2217://host:port, loop://
    #   com_baud       bits per second (the default depends on the type)
    #   idle_timeout = 0     reopen the port when it sent nothing for this many seconds (0: never)
    # A port that is missing, unplugged or failing is reopened by itself (after 1 s, doubling
    # up to 30 s); one warning when it goes, one line when it is back.
    """
    LIVE_SETTINGS = Listener.LIVE_SETTINGS | {"max_line", "idle_timeout"}
    BAUD_HINT = ""   # what the usual baud rates are, for the wrong-baud hint

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.port: Optional[serial.SerialBase] = None
        self.port_stats = PortStats()
        self.commands = CommandQueue(self.loop, self._write_port)
        self._splitter = LineSplitter(self.settings["max_line"])
        self._fd: Optional[int] = None
        self._timers: Dict[str, Timer] = {}
        self._backoff = Backoff(RETRY_MIN, RETRY_MAX)
        self._outage: Optional[_Outage] = None
        self._idle_since: Optional[float] = None
        self._last_data = 0.0
        self._opened_at = 0.0
        self._fragment: Optional[bytearray] = None
        self._settling = False
        self._garbled = 0

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        port = settings.get("com_port") or ""
        scheme = port.split("://", 1)[0] if "://" in port else None
        if scheme is not None and scheme not in URL_SCHEMES:
            return [f"com_port = {port}: unknown URL type {scheme}:// "
                    f"(a device path, or one of {', '.join(s + '://' for s in URL_SCHEMES)})"]
        return []

    @classmethod
    def claims(cls, settings: dict) -> list:
        """The serial device this listener reads (see gateway.config: a device has one reader)."""
        port = settings.get("com_port") or ""
        return [] if "://" in port else [("com_port", ("device", os.path.realpath(port)))]

    @classmethod
    def file_settings(cls, settings: dict) -> Dict[str, str]:
        """pyserial's ``spy://`` port writes its trace to the file its ``file=`` names."""
        files = super().file_settings(settings)
        port = settings.get("com_port") or ""
        if port.startswith("spy://"):
            traced = urllib.parse.parse_qs(urllib.parse.urlsplit(port).query).get("file")
            if traced:
                files["com_port"] = traced[0]
        return files

    @property
    def port_name(self) -> str:
        return self.settings["com_port"]

    # -- hooks for subclasses -------------------------------------------------------------
    def port_opened(self) -> None:
        """The port is open: at start, back after an outage, or reopened after silence."""

    def port_closed(self) -> None:
        """The port closed (lost, or reopened after silence); queued commands are gone."""

    def send_command(self, data: bytes, gap: float) -> bool:
        """Queue bytes for the device, followed by ``gap`` s of silence; False if not possible."""
        if self.port is not None and self.commands.put(data, gap):
            return True
        self.port_stats.commands_dropped += 1
        return False

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        """Open the port now, or keep trying in the background: a missing port is not an error."""
        self._try_open()

    def close(self) -> None:
        self._cancel("retry")
        self._close_port()
        super().close()

    def apply_settings(self, changed: set) -> None:
        self._splitter.max_line = self.settings["max_line"]
        if "idle_timeout" in changed:
            self._arm_idle()

    # -- opening and closing ------------------------------------------------------------
    def _try_open(self) -> None:
        self._timers.pop("retry", None)
        try:
            port = serial.serial_for_url(self.port_name, baudrate=self.settings["com_baud"],
                                         timeout=0, write_timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._open_failed(exc)
            return
        self.port = port
        try:
            self._fd = port.fileno()
        except (serial.SerialException, OSError, AttributeError, NotImplementedError):
            self._fd = None
        if self._fd is not None:
            self.loop.add_reader(self._fd, self._on_readable)
        else:
            # No descriptor to watch (loop://, rfc2217://): read on a timer, and let pyserial
            # queue writes (a zero write timeout would make loop:// refuse every write).
            port.write_timeout = None
            self._timers["poll"] = self.loop.call_later(POLL_INTERVAL, self._poll)
        now = time.monotonic()
        self._opened_at = self._last_data = now
        self._settling, self._garbled = True, 0
        self._backoff.reset()
        self.port_stats.opens += 1
        self._log_opened(now)
        self._arm_idle()
        self.port_opened()

    def _log_opened(self, now: float) -> None:
        outage, self._outage = self._outage, None
        baud = self.settings["com_baud"]
        if self.port_stats.opens == 1:
            self.log.info("%s: reading %s at %d baud%s", self, self.port_name, baud,
                          f" (available after {now - outage.since:.0f} s)" if outage else "")
        elif outage is not None:
            self.log.info("%s: %s is back (%d baud) after %.0f s", self, self.port_name, baud,
                          now - outage.since)
        else:
            self.log.debug("%s: %s reopened", self, self.port_name)

    def _open_failed(self, exc: Exception) -> None:
        kind, text = describe_open_error(self.port_name, exc)
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(time.monotonic(), kind)
            self.log.warning("%s: cannot open %s: %s; trying again in %g s, then less often "
                             "(every %g s at most)", self, self.port_name, text, self._backoff.peek(), RETRY_MAX)
        elif kind != outage.kind and (outage.kind, kind) != ("lost", "missing"):
            outage.kind = kind   # e.g. replugged, but now held by another program: worth a line
            self.log.info("%s: still cannot open %s, now: %s", self, self.port_name, text)
        else:
            outage.kind = kind   # a vanished device is missing until it is back: nothing to say
            self.log.debug("%s: cannot open %s: %s", self, self.port_name, text)
        outage.attempts += 1
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._cancel("retry")
        self._timers["retry"] = self.loop.call_later(self._backoff.next(), self._try_open)

    def _lose(self, why: str) -> None:
        """The open port failed: close it and reopen it with backoff."""
        if self.port is None:
            return
        self._close_port()
        self.port_stats.losses += 1
        self._outage = _Outage(time.monotonic(), "lost")
        self._backoff.reset()
        self.log.warning("%s: lost %s (%s); reopening it in %g s, then less often (every %g s "
                         "at most)", self, self.port_name, why, self._backoff.peek(), RETRY_MAX)
        self._schedule_retry()

    def _close_port(self) -> None:
        if self.port is None:
            return
        for name in ("poll", "idle"):
            self._cancel(name)
        if self._fd is not None:
            self.loop.remove_reader(self._fd)
        port, self.port, self._fd = self.port, None, None
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass
        self.port_stats.commands_dropped += self.commands.clear()
        rest = self._splitter.discard_partial()
        if rest.strip():
            self.reject("half line when the port closed", rest)
        self._fragment = None
        self.port_closed()

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    # -- reading ------------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE) if self._fd is not None else self.port.read(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, serial.SerialException) as exc:
            self._lose(f"read failed: {getattr(exc, 'strerror', None) or exc}")
            return
        if data:
            self._received(data)
        elif self._fd is not None:
            self._lose("the device is gone: unplugged?")

    def _poll(self) -> None:
        self._timers["poll"] = self.loop.call_later(POLL_INTERVAL, self._poll)
        self._on_readable()

    def _received(self, data: bytes) -> None:
        now = time.monotonic()
        self._last_data = now
        self.port_stats.bytes_in += len(data)
        if self._idle_since is not None:
            self.log.info("%s: data from %s again after %.0f s", self, self.port_name, now - self._idle_since)
            self._idle_since = None
        if self._settling:
            data = self._skip_fragment(data, now)
        for line in self._splitter.feed(data):
            self.handle_line(line)

    def _skip_fragment(self, data: bytes, now: float) -> bytes:
        """Drop the tail of a line the device was sending when the port opened.

        Bytes that arrive within OPEN_SETTLE of opening, up to the first line end, may be the
        end of a line whose start was sent before: parsed, it could pass for a frame of the
        wrong node. Bytes that come later start a line of their own.
        """
        if self._fragment is None:
            if now - self._opened_at >= OPEN_SETTLE:
                self._settling = False
                return data
            self._fragment = bytearray()
        head, rest = split_first_line(data)
        self._fragment += head[-80:]
        del self._fragment[:-80]
        if rest is None:
            return b""
        self._settling = False
        if self._fragment.strip():
            self.reject("half line when the port opened", bytes(self._fragment))
        self._fragment = None
        return rest

    def handle_line(self, line) -> None:
        if isinstance(line, BadLine) and line.reason == "not UTF-8":
            self._garbled += 1
            if self._garbled == GARBLED_HINT_AFTER:
                self.log.warning("%s: %d lines in a row from %s are not text: is com_baud (%d) the "
                                 "device's speed?%s", self, self._garbled, self.port_name,
                                 self.settings["com_baud"], self.BAUD_HINT)
        else:
            self._garbled = 0
        super().handle_line(line)

    # -- silence ------------------------------------------------------------------------
    def _arm_idle(self) -> None:
        self._cancel("idle")
        timeout = self.settings["idle_timeout"]
        if timeout > 0 and self.port is not None:
            self._timers["idle"] = self.loop.call_later(
                self._last_data + timeout - time.monotonic(), self._check_idle)

    def _check_idle(self) -> None:
        self._timers.pop("idle", None)
        timeout = self.settings["idle_timeout"]
        if time.monotonic() - self._last_data < timeout:
            self._arm_idle()
            return
        if self._idle_since is None:
            self._idle_since = self._last_data
            self.log.warning("%s: no data from %s for %g s: reopening it (again every %g s until "
                             "data comes)", self, self.port_name, timeout, timeout)
        self.port_stats.idle_reopens += 1
        self._close_port()
        self._try_open()

    # -- writing ------------------------------------------------------------------------
    def _write_port(self, data: bytes) -> Optional[int]:
        if self.port is None:
            return None
        try:
            written = os.write(self._fd, data) if self._fd is not None else self.port.write(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except (OSError, serial.SerialException) as exc:
            self._lose(f"write failed: {getattr(exc, 'strerror', None) or exc}")
            return None
        if written == len(data):
            self.port_stats.commands_sent += 1
        return written


def describe_open_error(port: str, exc: Exception):
    """``(kind, text)`` for a failed open: what happened and what to do about it."""
    code = getattr(exc, "errno", None)
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        holders = port_holders(port)
        who = f" ({', '.join(holders)})" if holders else ""
        return "busy", (f"it is in use by another program{who}: stop that program (another "
                        f"gateway, emonhub, a serial console, a firmware upload) or use another port")
    if code == errno.ENOENT:
        return "missing", ("no such device (not plugged in? a USB adapter may come back under "
                           "another name; /dev/serial/by-id/... names stay the same)")
    if code == errno.EACCES:
        return "denied", "permission denied (the gateway's user must be in the 'dialout' group)"
    return "error", str(exc)


def port_holders(port: str, limit: int = 3) -> List[str]:
    """``pid 123 (emonhub)`` for processes that have ``port`` open, as far as /proc shows them."""
    try:
        target = os.path.realpath(port)
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")):
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
                    found.append(f"pid {pid} ({comm.read().strip()})")
        except OSError:
            continue
        if len(found) >= limit:
            break
    return found
