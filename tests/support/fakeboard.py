"""Serial devices for the tests: a pseudo-terminal behind a fixed path, and RF12demo boards on it.

``FakePort`` is a pty whose slave side is reached through a symlink, so a test can unplug it
(the device node vanishes, as a USB adapter's does) and plug a new one in at the same path.
``FakeBoard`` plays an RF12demo board on such a port: it prints packets and banners the way the
two firmware generations do, answers the commands the gateway writes as the firmware would, and
records them so a test can wait for them. Every wait is on a Condition or ``select`` with a
deadline; nothing sleeps.
"""

import os
import re
import select
import termios
import threading
import time
import tty
from pathlib import Path
from typing import List, Optional

from tests.support.daemon import WAIT

_SPEEDS = {getattr(termios, f"B{n}"): n for n in (9600, 19200, 38400, 57600, 115200)}
_COMMAND_END = re.compile(rb"[a-z]")


class FakePort:
    """A pseudo-terminal standing in for a serial device at ``link``."""

    def __init__(self, link: Path):
        self.link = Path(link)
        self.master: Optional[int] = None
        self.slave: Optional[int] = None

    def plug(self) -> "FakePort":
        """A new device appears at ``link`` (a new pty; the symlink is replaced atomically)."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)   # no echo, no line editing, before anyone opens it
        tmp = self.link.with_name(self.link.name + ".new")
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)
        return self

    def unplug(self) -> None:
        """The device vanishes: the reader gets end-of-file and the path no longer exists."""
        if self.link.is_symlink():
            self.link.unlink()
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            select.select([], [self.master], [], WAIT)
            view = view[os.write(self.master, view):]

    def baud(self) -> int:
        """The speed the program on the other side set."""
        return _SPEEDS.get(termios.tcgetattr(self.slave)[4], 0)


class FakeBoard:
    """An RF12demo board on a FakePort.

    ``legacy=True`` is the 9600-baud RFM12Pi firmware of the original gateway: packets without
    ``OK``, no RSSI, no version command (``v`` prints the help text, which ends with the
    settings, the node letter printed as a number). Otherwise it is the RFM69Pi's RF12demo.14:
    ``OK ... (-60)`` packets, ``v`` prints ``[RF12demo.14] O i15 g210 @ 433 MHz q1``, and each
    command is echoed (``> 210g``) and followed by the new settings.
    """

    COMMAND_END = _COMMAND_END   # RF12demo: a command ends with its letter

    def __init__(self, link: Path, node_id=15, group=210, band=433, quiet=True, legacy=False,
                 answers=True):
        self.port = FakePort(link)
        self.settings = {"i": node_id, "g": group, "b": {433: 4, 868: 8, 915: 9}[band], "q": int(quiet)}
        self.legacy = legacy
        self.answers = answers
        self.commands: List[str] = []
        self.received = bytearray()
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._stop_r = self._stop_w = None

    # -- plugging -----------------------------------------------------------------------
    def plug(self) -> "FakeBoard":
        self.port.plug()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, args=(self.port.master, self._stop_r), daemon=True)
        self._thread.start()
        return self

    def unplug(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(WAIT)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self.port.unplug()

    def __enter__(self):
        return self.plug()

    def __exit__(self, *exc):
        if self.port.master is not None:
            self.unplug()

    # -- what the board prints ----------------------------------------------------------
    def line(self, text: str) -> None:
        self.port.write(text.encode() + b"\r\n")

    def boot(self) -> None:
        """What the firmware prints at power-up: an empty line, then its banner."""
        self.port.write(b"\r\n")
        self._print_version()

    def packet(self, node: int, payload: bytes, rssi: Optional[int] = -60) -> None:
        data = " ".join(str(b) for b in payload)
        if self.legacy:
            self.line(f" {node} {data}")
        else:
            self.line(f"OK {node} {data}" + (f" ({rssi}) " if rssi is not None else ""))

    def config_line(self) -> str:
        band = {4: 433, 8: 868, 9: 915}[self.settings["b"]]
        node, group = self.settings["i"], self.settings["g"]
        if self.legacy:
            return f"{64 + node} i{node} g{group} @ {band} MHz  Lock: 0"
        return f" {chr(64 + node)} i{node} g{group} @ {band} MHz" + (" q1" if self.settings["q"] else "")

    def _print_version(self) -> None:
        if self.legacy:
            self.port.write(b"\r\n[RFM2Pi]\r\nAvailable commands:\r\n"
                            b"  <nn> i     - set node ID (standard node ids are 1..26)\r\n"
                            b"  <n> b      - set MHz band (4 = 433, 8 = 868, 9 = 915)\r\n"
                            b"  <nnn> g    - set network group (RFM12 only allows 212)\r\n"
                            b"Current configuration:\r\n" + self.config_line().encode() + b"\r\n")
        else:
            self.line("\r\n[RF12demo.14]" + self.config_line())

    # -- what the gateway writes --------------------------------------------------------
    def wait_for_commands(self, count: int, timeout: float = WAIT) -> List[str]:
        """Block until ``count`` commands arrived in all; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.commands) >= count, timeout):
                raise AssertionError(f"board got {self.commands}, not {count} commands")
            return list(self.commands)

    def wait_for_command(self, pattern: str, count: int = 1, timeout: float = WAIT) -> List[str]:
        """Block until ``count`` commands match the regex ``pattern``; return those."""
        regex = re.compile(pattern)

        def found():
            return [c for c in self.commands if regex.fullmatch(c)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(found()) >= count, timeout):
                raise AssertionError(f"board never got {count} x {pattern!r}; it got {self.commands}")
            return found()

    def _serve(self, master: int, stop: int) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([master, stop], [], [])
            if stop in ready:
                return
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            pending += data
            with self._cond:
                self.received += data
            while True:
                end = self.COMMAND_END.search(pending)
                if end is None:
                    break
                command = pending[:end.end()].decode("ascii", "replace").strip()
                pending = pending[end.end():]
                self._answer(command)

    def _answer(self, command: str) -> None:
        with self._cond:
            self.commands.append(command)
            self._cond.notify_all()
        if not self.answers:
            return
        letter, value = command[-1], command[:-1]
        if letter == "v":
            self._print_version()
            return
        if not self.legacy:
            self.line(f"> {command}")
        if letter in self.settings and value.isdigit():
            self.settings[letter] = int(value)
            self.line(self.config_line())
        elif letter == "s" and not self.legacy:
            self.line(f"-> {len(value.split(',')) - 1} b")


def read_until(port: FakePort, predicate, timeout: float = WAIT) -> bytes:
    """Read what the program writes to ``port`` until ``predicate(data)``; with a deadline."""
    deadline = time.monotonic() + timeout
    data = b""
    while not predicate(data):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([port.master], [], [], left)[0]:
            raise AssertionError(f"only got {data!r}")
        data += os.read(port.master, 4096)
    return data
