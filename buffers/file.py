"""File buffer: appends readings to local CSV files, one per day (or rotated by size).

The destination that needs no server. Each row is ``time,node,value1,value2,...``; ``time``
is the Unix time the reading was received, to the millisecond. Paths are strftime patterns
(local time of the reading), relative to the config file's folder.

The file itself is never reached through a symlink (``O_NOFOLLOW``) and must be a regular
file; rotation renames only the file this buffer wrote (checked by inode) and regular backups.
A rotation that fails is logged and tried again later: the rows are written either way.
"""

import errno
import logging
import os
import stat
import time
from typing import List, Optional

from buffers.base import Buffer, TransientError
from gateway.frame import Frame
from gateway.logs import LogThrottle

HEADER = "time,node,values\n"
OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FileBuffer(Buffer):
    SPEC = """
    path = path(default='readings/%Y-%m-%d.csv')
    max_bytes = integer(min=0, max=1099511627776, default=0)
    backups = integer(min=0, max=1000, default=5)
    """

    def __init__(self, *args, **kwargs):
        self._handle = None
        self._path: Optional[str] = None
        super().__init__(*args, **kwargs)
        self._rotation_problems = LogThrottle(self.log, logging.WARNING, 300.0)

    def configure(self) -> None:
        self._close_file()

    def send(self, batch: List[Frame]) -> None:
        for path, rows in self._rows_by_file(batch):
            try:
                handle = self._open(path)
                handle.write("".join(rows))
                handle.flush()
            except OSError as exc:
                self._close_file()
                raise TransientError(f"cannot write {exc.filename or path}: {_reason(exc)}") from None
            self._rotate_if_large(path)

    def close_transport(self) -> None:
        self._close_file()

    # -- files --------------------------------------------------------------------------
    def _rows_by_file(self, batch: List[Frame]):
        pattern = self.settings["path"]
        current_path, rows = None, []
        for frame in batch:
            path = time.strftime(pattern, time.localtime(frame.time))
            if path != current_path and rows:
                yield current_path, rows
                rows = []
            current_path = path
            rows.append("%.3f,%s,%s\n" % (frame.time, frame.node, ",".join(map(str, frame.values))))
        if rows:
            yield current_path, rows

    def _open(self, path: str):
        if self._handle is not None and self._path == path:
            return self._handle
        self._close_file()
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        fd = os.open(path, OPEN_FLAGS, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", path)
            os.set_blocking(fd, True)
            handle = os.fdopen(fd, "a", encoding="utf-8")
        except BaseException:
            os.close(fd)
            raise
        self._handle, self._path = handle, path
        if handle.tell() == 0:
            handle.write(HEADER)
        return handle

    def _rotate_if_large(self, path: str) -> None:
        limit = self.settings["max_bytes"]
        if not limit or self._handle.tell() < limit:
            return
        written = os.fstat(self._handle.fileno())
        self._close_file()
        try:
            self._rotate(path, written)
        except OSError as exc:
            self._rotation_problems("%s: cannot rotate %s: %s (rows are still appended to it)",
                                    self, exc.filename or path, _reason(exc))
        else:
            self._rotation_problems.reset()

    def _rotate(self, path: str, written: os.stat_result) -> None:
        """``path`` -> ``path.1`` -> ``path.2`` ...; only if ``path`` is still the file written."""
        current = os.lstat(path)
        if (current.st_dev, current.st_ino) != (written.st_dev, written.st_ino):
            raise OSError(errno.ESTALE, "it was replaced by another file: left alone", path)
        backups = self.settings["backups"]
        if backups == 0:
            os.remove(path)
            return
        for index in range(backups - 1, 0, -1):
            older = f"{path}.{index}"
            if _is_regular_file(older):
                os.replace(older, f"{path}.{index + 1}")
        os.replace(path, f"{path}.1")

    def _close_file(self) -> None:
        handle, self._handle, self._path = self._handle, None, None
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link: not followed"
    if exc.errno == errno.ENXIO:
        return "not a regular file"
    return exc.strerror or str(exc)
