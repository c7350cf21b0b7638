"""File buffer: appends readings to local CSV files, by default one per node and day.

The destination that needs no server. Each row is ``time,local_time,node,value1,value2,...``:
``time`` is the Unix time the reading was received, to the millisecond (for programs);
``local_time`` the same moment in ISO 8601 local time, ``2026-05-01T14:03:07`` (for people
and spreadsheets). Paths are strftime patterns (local time of the reading), relative to the
config file's folder; ``{node}`` in a path is the node's name or id.

Every file starts with a header row. In a file of one node (a path with ``{node}``) it names
the node's inputs, ``time,local_time,node,power1,power2,vrms``, so a spreadsheet shows named
columns; in a file of every node it is ``time,local_time,node,values``. A file's columns never
change: when a node's inputs change (other names, another count) the rows go on in a new file
beside it, ``emontx-2026-05-01_2.csv``, with the new header.

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

COLUMNS = ("time", "local_time", "node")
MIXED_HEADER = ",".join(COLUMNS + ("values",))
NODE = "{node}"
MAX_VARIANTS = 1000   # files of one day and node with other columns: beyond, the last is used
OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FileBuffer(Buffer):
    SPEC = """
    path = path(default='readings/{node}-%Y-%m-%d.csv')
    max_bytes = integer(min=0, max=1099511627776, default=0)
    backups = integer(min=0, max=1000, default=5)
    """
    SAMPLE = """
    # Appends every reading to local CSV files, one row each:
    #     time,local_time,node,value1,value2,...
    #     1777644187.125,2026-05-01T14:03:07,emontx,230,241.2
    # (time: Unix time, for programs; local_time: the same in ISO 8601 local time). Each file
    # starts with a header row; in a file of one node it names the inputs (power1,vrms,...).
    # When a node's inputs change, its rows go on in a new file beside it (..._2.csv).
    [[...]]
    # strftime pattern (local time of the reading); {node} is the node's name or id. By
    # default one file per node and day. Without {node}: one file for every node, whose
    # header is time,local_time,node,values. The file is never written through a symlink.
    # Set from the web page, it must be under the data folder or [gateway] file_roots.
    path = readings/{node}-%Y-%m-%d.csv
    # Rotate a file when it reaches this size in bytes (0 = never) ...
    max_bytes
    # ... keeping this many rotated copies (file.1, file.2, ...).
    backups
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._handle = None
        self._path: Optional[str] = None      # the file open
        self._wanted: Optional[tuple] = None  # the (path, header) it was opened for
        self._rotation_problems = LogThrottle(self.log, logging.WARNING, 300.0)

    def configure(self) -> None:
        self._close_file()

    def send(self, batch: List[Frame]) -> None:
        for (path, header), rows in self._rows_by_file(batch):
            try:
                handle = self._open(path, header)
                handle.write("".join(rows))
                handle.flush()
            except OSError as exc:
                self._close_file()
                raise TransientError(f"cannot write {exc.filename or path}: {_reason(exc)}") from None
            self._rotate_if_large(self._path)

    def close_transport(self) -> None:
        self._close_file()

    # -- files --------------------------------------------------------------------------
    def _rows_by_file(self, batch: List[Frame]):
        """``((path, header), rows)`` for runs of readings that go to one file."""
        pattern = self.settings["path"]
        per_node = NODE in pattern
        current, rows = None, []
        for frame in batch:
            local = time.localtime(frame.time)
            path = time.strftime(pattern, local)
            if per_node:
                path = path.replace(NODE, str(frame.node))
                header = ",".join(COLUMNS + tuple(frame.names or map(str, range(1, len(frame.values) + 1))))
            else:
                header = MIXED_HEADER
            if (path, header) != current and rows:
                yield current, rows
                rows = []
            current = (path, header)
            rows.append("%.3f,%s,%s,%s\n" % (frame.time, time.strftime("%Y-%m-%dT%H:%M:%S", local),
                                             frame.node, ",".join(map(str, frame.values))))
        if rows:
            yield current, rows

    def _open(self, path: str, header: str):
        """The file for rows of ``header`` at ``path``: ``path`` itself, or, when it was started
        with other columns, the first of ``name_2.csv``, ``name_3.csv`` ... that has these
        columns or does not exist yet. A new file gets the header first."""
        if self._handle is not None and self._wanted == (path, header):
            return self._handle
        self._close_file()
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        stem, ext = os.path.splitext(path)
        for variant in range(1, MAX_VARIANTS + 1):
            candidate = path if variant == 1 else f"{stem}_{variant}{ext}"
            first = _first_line(candidate)
            if first in (None, "", header) or variant == MAX_VARIANTS:
                break
        handle = _open_for_append(candidate)
        self._handle, self._path, self._wanted = handle, candidate, (path, header)
        if handle.tell() == 0:
            handle.write(header + "\n")
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
        handle, self._handle, self._path, self._wanted = self._handle, None, None, None
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass


def _open_for_append(path: str):
    fd = os.open(path, OPEN_FLAGS, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def _first_line(path: str) -> Optional[str]:
    """The header of an existing file (its first line), "" if it is empty, None if there is no
    file. Never follows a symlink nor blocks on a FIFO (such a path fails when opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return ""   # opened for writing, it gives the reason
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, 4096).decode("utf-8", "replace").split("\n", 1)[0].rstrip("\r")
    finally:
        os.close(fd)


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
