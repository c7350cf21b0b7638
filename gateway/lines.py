"""Turning a byte stream into text lines, safely: bounded length, strict UTF-8.

A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (many serial devices end their lines with
CR only). ``\\r\\n`` is one line end even when the ``\\r`` ends one read and the ``\\n`` starts
the next: the line is given at the ``\\r`` and that ``\\n`` is skipped.
"""

from typing import List, Optional, Tuple, Union


class BadLine:
    """A line that could not be used, and why (``too long``, ``not UTF-8``)."""

    __slots__ = ("reason", "preview")

    def __init__(self, reason: str, preview: bytes):
        self.reason = reason
        self.preview = preview

    def __repr__(self) -> str:
        return f"BadLine({self.reason!r}, {self.preview!r})"


class LineSplitter:
    """Accumulates bytes and returns complete lines (see the module's docstring for line ends).

    A line longer than ``max_line`` bytes is reported once as a BadLine and the rest of it is
    skipped up to its end, so one huge line can neither fill memory nor corrupt the next line.
    """

    def __init__(self, max_line: int = 4096):
        self.max_line = max_line
        self._pending = b""           # the start of a line whose end has not come yet
        self._skipping = False        # the pending line was too long: drop it up to its end
        self._after_cr = False        # the last byte seen ended a line with \r

    def feed(self, data: bytes) -> List[Union[str, BadLine]]:
        """Every complete line (str) or BadLine found after adding ``data``, in order."""
        if self._after_cr and data:
            self._after_cr = False
            if data[0] == 10:           # the \n of a \r\n split between two reads
                data = data[1:]
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0:   # no line end: the line goes on
            self._pending += data
            return self._too_long() if len(self._pending) > self.max_line else []
        self._after_cr = end == len(data) - 1 and data[end] == 13
        if self._pending:
            block, self._pending = self._pending + data[:end + 1], data[end + 1:]
        else:
            block, self._pending = data[:end + 1], data[end + 1:]
        # bytes.splitlines() ends lines at \n, \r\n and \r only (unlike str.splitlines()).
        raw_lines = block.splitlines()
        if self._skipping:   # the end of a line already reported as too long
            self._skipping = False
            del raw_lines[0]
        lines = self._decode(raw_lines)
        if len(self._pending) > self.max_line:
            lines += self._too_long()
        return lines

    def _too_long(self) -> List[Union[str, BadLine]]:
        """The pending line is longer than allowed: report it once, skip it up to its end."""
        pending, self._pending = self._pending, b""
        if self._skipping:
            return []
        self._skipping = True
        return [BadLine("too long", pending[:60])]

    def discard_partial(self) -> bytes:
        """Forget a half line (at reconnect); returns what was dropped."""
        dropped = self._pending
        self._pending = b""
        self._skipping = self._after_cr = False
        return dropped

    def _decode(self, lines: List[bytes]) -> List[Union[str, BadLine]]:
        max_line = self.max_line
        if len(lines) == 1:
            raw = lines[0]
            return [_decoded(raw) if len(raw) <= max_line else BadLine("too long", raw[:60])]
        if lines and max(map(len, lines)) <= max_line:
            try:   # the usual case: every line short and UTF-8
                return [raw.decode("utf-8") for raw in lines]
            except UnicodeDecodeError:
                pass
        return [_decoded(raw) if len(raw) <= max_line else BadLine("too long", raw[:60])
                for raw in lines]


def _decoded(raw: bytes) -> Union[str, BadLine]:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadLine("not UTF-8", raw[:60])


def split_first_line(data: bytes) -> Tuple[bytes, Optional[bytes]]:
    """``(first line, what follows its line end)``; ``(data, None)`` if ``data`` has no line end."""
    lf, cr = data.find(b"\n"), data.find(b"\r")
    if cr < 0 and lf < 0:
        return data, None
    if cr < 0 or 0 <= lf < cr:
        return data[:lf], data[lf + 1:]
    return data[:cr], data[cr + 2:] if data[cr + 1:cr + 2] == b"\n" else data[cr + 1:]
