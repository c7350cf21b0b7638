"""An OEM board (tests/oem_boards.py) on a pseudo-terminal: it answers each command line the
gateway writes as its firmware does, prints readings and boot messages when a test asks, and
records the commands so a test can wait for them (on a Condition, with a deadline)."""

import os
import re
import select
import threading
from pathlib import Path
from typing import List, Optional

from tests.conftest import WAIT
from tests.fakeboard import FakePort


class OemFakeBoard:
    def __init__(self, link: Path, board):
        self.port = FakePort(link)
        self.board = board
        self.commands: List[str] = []
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._stop_r = self._stop_w = None

    def __enter__(self) -> "OemFakeBoard":
        self.port.plug()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(WAIT)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self.port.unplug()

    def lines(self, lines: List[str]) -> None:
        self.port.write("".join(line + "\r\n" for line in lines).encode())

    def wait_for_command(self, pattern: str, count: int = 1, timeout: float = WAIT) -> List[str]:
        regex = re.compile(pattern)

        def found():
            return [c for c in self.commands if regex.fullmatch(c)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(found()) >= count, timeout):
                raise AssertionError(f"board never got {count} x {pattern!r}; it got {self.commands}")
            return found()

    def _serve(self) -> None:
        pending = b""
        master = self.port.master
        while True:
            ready, _, _ = select.select([master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                pending += os.read(master, 4096)
            except OSError:
                return
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                command = raw.decode("ascii", "replace").strip("\r")
                with self._cond:
                    self.commands.append(command)
                    self._cond.notify_all()
                self.lines(self.board.answer(command))
