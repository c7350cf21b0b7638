"""The output of a child process, read line by line by a thread, so tests wait for a line
(blocking on a Condition) instead of sleeping."""

import collections
import re
import subprocess
import threading
from typing import Optional

WAIT = 30  # seconds: generous upper bound for any awaited line; passing tests never wait it out


class ProcessLog:
    """Lines a process (or a series of processes, e.g. a restarted broker) printed so far."""

    def __init__(self, name: str, keep_lines: Optional[int] = None):
        """``keep_lines``: keep only the last so many lines (a long run); all by default."""
        self.name = name
        self.lines = collections.deque(maxlen=keep_lines)
        self._cond = threading.Condition()
        self._proc: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None

    def follow(self, proc: subprocess.Popen) -> None:
        """Start reading ``proc``'s stdout (text mode) into ``lines``."""
        self._proc = proc
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def tail(self, n: int) -> str:
        """The last ``n`` lines."""
        with self._cond:
            return "\n".join(list(self.lines)[-n:])

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._cond:
            return sum(1 for line in self.lines if regex.search(line))

    def wait_for(self, pattern: str, count: int = 1, timeout: float = WAIT) -> str:
        """Block until ``count`` lines match the regex ``pattern`` (or the process is gone and
        its output read); return the last match, or raise AssertionError with the whole log."""
        regex = re.compile(pattern)

        def matches():
            return [line for line in self.lines if regex.search(line)]

        def ended():
            return self._proc.poll() is not None and not self._reader.is_alive()

        with self._cond:
            self._cond.wait_for(lambda: len(matches()) >= count or ended(), timeout)
            found = matches()
            if len(found) < count:
                raise AssertionError(f"{self.name} never logged {count} x {pattern!r}; its log:\n"
                                     + "\n".join(self.lines))
            return found[count - 1]

    def join(self, timeout: float = WAIT) -> None:
        if self._reader is not None:
            self._reader.join(timeout)
