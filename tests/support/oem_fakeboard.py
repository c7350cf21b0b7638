"""An OEM board (tests/oem_boards.py) on a pseudo-terminal: it answers each command line the
gateway writes as its firmware does, prints readings and boot messages when a test asks, and
records the commands so a test can wait for them (``wait_for_command``, on a Condition)."""

import os
import select
from pathlib import Path
from typing import List

from tests.support.fakeboard import FakeBoard


class OemFakeBoard(FakeBoard):
    """``board`` (an AvrdbBoard, Emon32Board...) behind a FakePort; commands end with a newline."""

    def __init__(self, link: Path, board):
        super().__init__(link)
        self.board = board

    def lines(self, lines: List[str]) -> None:
        self.port.write("".join(line + "\r\n" for line in lines).encode())

    def _serve(self, master: int, stop: int) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([master, stop], [], [])
            if stop in ready:
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
