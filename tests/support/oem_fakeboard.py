"""An OEM board (tests/support/oem_boards.py) on a pseudo-terminal: it answers each command line
the gateway writes as its firmware does, prints readings and boot messages when a test asks,
and records the commands so a test can wait for them (``wait_for_command``, on a Condition)."""

import re
from pathlib import Path
from typing import List

from tests.support.fakeboard import FakeBoard


class OemFakeBoard(FakeBoard):
    """``board`` (an AvrdbBoard, Emon32Board...) behind a FakePort; commands end with a newline."""

    COMMAND_END = re.compile(rb"\n")

    def __init__(self, link: Path, board):
        super().__init__(link)
        self.board = board

    def lines(self, lines: List[str]) -> None:
        self.port.write("".join(line + "\r\n" for line in lines).encode())

    def _answer(self, command: str) -> None:
        with self._cond:
            self.commands.append(command)
            self._cond.notify_all()
        self.lines(self.board.answer(command))
