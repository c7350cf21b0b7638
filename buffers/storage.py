"""Where the spool's files live: the real file system, or memory.

The spool does all its file I/O through this small interface, so the same code runs on a
tmpfs, an SD card, or in process memory (``durability = none``), and tests can substitute a
model that knows which bytes a power cut would lose.
"""

import errno
import os
import threading
from typing import Dict, List


class Files:
    """A flat folder of files. Names are plain file names, never paths."""

    def listdir(self) -> List[str]: raise NotImplementedError
    def size(self, name: str) -> int: raise NotImplementedError
    def append(self, name: str, data: bytes) -> None: raise NotImplementedError
    def read(self, name: str, offset: int, length: int) -> bytes: raise NotImplementedError
    def pwrite(self, name: str, offset: int, data: bytes) -> None: raise NotImplementedError
    def truncate(self, name: str, length: int) -> None: raise NotImplementedError
    def sync(self, name: str) -> None: raise NotImplementedError
    def sync_dir(self) -> None: raise NotImplementedError
    def unlink(self, name: str) -> None: raise NotImplementedError
    def set_aside(self, name: str) -> None: raise NotImplementedError
    def close(self) -> None: pass

    def describe(self) -> str:
        return repr(self)


class OsFiles(Files):
    """Files in a real folder. Appends go through one cached descriptor per file."""

    QUARANTINE = "quarantine"

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._fds: Dict[str, int] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.folder

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def _fd(self, name: str) -> int:
        with self._lock:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._fds[name] = os.open(self._path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            return fd

    def listdir(self) -> List[str]:
        return [n for n in os.listdir(self.folder) if os.path.isfile(self._path(n))]

    def size(self, name: str) -> int:
        return os.stat(self._path(name)).st_size

    def append(self, name: str, data: bytes) -> None:
        fd = self._fd(name)
        end = os.lseek(fd, 0, os.SEEK_END)
        written = os.pwrite(fd, data, end)
        if written != len(data):  # a short write (disk full): do not leave half a frame
            os.ftruncate(fd, end)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path(name))

    def read(self, name: str, offset: int, length: int) -> bytes:
        return os.pread(self._fd(name), length, offset)

    def pwrite(self, name: str, offset: int, data: bytes) -> None:
        os.pwrite(self._fd(name), data, offset)

    def truncate(self, name: str, length: int) -> None:
        os.ftruncate(self._fd(name), length)

    def sync(self, name: str) -> None:
        os.fdatasync(self._fd(name))

    def sync_dir(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _forget(self, name: str) -> None:
        with self._lock:
            fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def unlink(self, name: str) -> None:
        self._forget(name)
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass

    def set_aside(self, name: str) -> None:
        """Move a damaged file to ``quarantine/`` for a person to look at, if they want to."""
        self._forget(name)
        target = os.path.join(self.folder, self.QUARANTINE)
        os.makedirs(target, exist_ok=True)
        os.replace(self._path(name), os.path.join(target, name + ".corrupt"))

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)


class MemoryFiles(Files):
    """Files held in process memory: for ``durability = none``, and as a base for test models."""

    def __init__(self):
        self.data: Dict[str, bytearray] = {}
        self.set_aside_names: List[str] = []
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "memory"

    def listdir(self) -> List[str]:
        with self._lock:
            return list(self.data)

    def size(self, name: str) -> int:
        with self._lock:
            return len(self.data[name])

    def append(self, name: str, data: bytes) -> None:
        with self._lock:
            self.data.setdefault(name, bytearray()).extend(data)

    def read(self, name: str, offset: int, length: int) -> bytes:
        with self._lock:
            return bytes(self.data[name][offset:offset + length])

    def pwrite(self, name: str, offset: int, data: bytes) -> None:
        with self._lock:
            buf = self.data.setdefault(name, bytearray())
            if len(buf) < offset:
                buf.extend(bytes(offset - len(buf)))
            buf[offset:offset + len(data)] = data

    def truncate(self, name: str, length: int) -> None:
        with self._lock:
            del self.data[name][length:]

    def sync(self, name: str) -> None:
        pass

    def sync_dir(self) -> None:
        pass

    def unlink(self, name: str) -> None:
        with self._lock:
            self.data.pop(name, None)

    def set_aside(self, name: str) -> None:
        with self._lock:
            self.data.pop(name, None)
            self.set_aside_names.append(name)
