"""Turning a byte stream into text lines, safely: bounded length, strict UTF-8."""

from typing import Iterator, Union


class BadLine:
    """A line that could not be used, and why (``too long``, ``not UTF-8``)."""

    __slots__ = ("reason", "preview")

    def __init__(self, reason: str, preview: bytes):
        self.reason = reason
        self.preview = preview

    def __repr__(self) -> str:
        return f"BadLine({self.reason!r}, {self.preview!r})"


class LineSplitter:
    """Accumulates bytes and yields complete lines ending in ``\\n`` or ``\\r\\n``.

    A line longer than ``max_line`` bytes is reported once as a BadLine and the rest of it is
    skipped up to its end, so one huge line can neither fill memory nor corrupt the next line.
    """

    def __init__(self, max_line: int = 4096):
        self.max_line = max_line
        self._pending = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> Iterator[Union[str, BadLine]]:
        """Yield each complete line (str) or BadLine found after adding ``data``."""
        pending = self._pending
        pending += data
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0:
                break
            raw = bytes(pending[start:end])
            start = end + 1
            if self._skipping:
                self._skipping = False
                continue
            if len(raw) > self.max_line:
                yield BadLine("too long", raw[:60])
                continue
            yield self._decode(raw.rstrip(b"\r"))
        del pending[:start]
        if len(pending) > self.max_line:
            if not self._skipping:
                yield BadLine("too long", bytes(pending[:60]))
                self._skipping = True
            pending.clear()

    def discard_partial(self) -> bytes:
        """Forget a half line (at reconnect); returns what was dropped."""
        dropped = bytes(self._pending)
        self._pending.clear()
        self._skipping = False
        return dropped

    @staticmethod
    def _decode(raw: bytes) -> Union[str, BadLine]:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return BadLine("not UTF-8", raw[:60])
