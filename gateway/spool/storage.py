"""Where the spool's files live: the real file system, or memory.

The spool does all its file I/O through this small interface, so the same code runs on a
tmpfs, an SD card, or in process memory (``durability = none``), and tests can substitute a
model that knows which bytes a power cut would lose.
"""

import errno
import os
import pwd
import stat
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


class UnsafeFolderError(OSError):
    """A folder, or a file in it, that someone other than the gateway's user could control."""


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _others_may_write(st: os.stat_result) -> bool:
    """May anyone but the owner (and the gateway's own group) add, remove or rename entries?"""
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and st.st_gid != os.getegid()


def _resolve_trusted(path: str) -> str:
    """``path`` resolved one step at a time, refusing any step another user controls: every
    folder on the way belongs to root or to us and, if others may write to it, is sticky (as
    /tmp and /dev/shm are); every symbolic link on the way belongs to root or to us."""
    me = os.geteuid()
    todo = [name for name in reversed(path.split(os.sep)) if name not in ("", ".")]
    current, links = os.sep, 0
    while todo:
        name = todo.pop()
        if name == "..":
            current = os.path.dirname(current)
            continue
        step = os.path.join(current, name)
        st = os.lstat(step)
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in (0, me):
                raise UnsafeFolderError(f"{step} is a symbolic link made by {_owner(st.st_uid)}, "
                                        f"who could point it anywhere")
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(step)
            if target.startswith(os.sep):
                current = os.sep
            todo.extend(name for name in reversed(target.split(os.sep)) if name not in ("", "."))
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeFolderError(f"{step} is not a folder")
        if st.st_uid not in (0, me):
            raise UnsafeFolderError(f"{step} belongs to {_owner(st.st_uid)}, who could replace what is in it")
        if _others_may_write(st) and not st.st_mode & stat.S_ISVTX:
            raise UnsafeFolderError(f"{step} is writable by other users, who could replace what is in it")
        current = step
    return current


def private_folder(path: str, sticky_ok: bool = False) -> str:
    """``path`` as a folder only this process's user controls: made with mode 0700 if missing,
    else checked. Raises :class:`UnsafeFolderError` (saying what to do) for a folder that
    belongs to someone else, that others may write to, or that is reached through another
    user's symbolic link: such a folder could be used to make the gateway overwrite any file
    its user can write, or to feed it readings. ``sticky_ok``: others may add entries if the
    folder is sticky (a fresh tmpfs mount is 1777), as they can never replace ours; fine for
    a folder that only holds private folders of ours."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    _resolve_trusted(parent)   # nothing is made in a place another user controls
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.stat(path)
    me = os.geteuid()
    if st.st_uid != me:
        raise UnsafeFolderError(f"{path} belongs to {_owner(st.st_uid)}, not to {_owner(me)} who runs "
                                f"the gateway: if you did not make it, someone else may have planted "
                                f"it; remove it, or give the gateway a folder of its own")
    if _others_may_write(st) and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        raise UnsafeFolderError(f"{path} is writable by other users, who could replace what is in "
                                f"it: make it private (chmod 700 {path})")
    _resolve_trusted(path)     # and no link on the way to it is someone else's
    return path


def _link_refused(path: str) -> UnsafeFolderError:
    return UnsafeFolderError(f"{path} is a symbolic link; the spool never follows links: "
                             f"remove it (rm {path})")


def open_regular(path: str, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that never follows a symbolic link and opens nothing but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_refused(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeFolderError(f"{path} is not a regular file: move it elsewhere")
    return fd


class OsFiles(Files):
    """Files in a real folder. Appends go through one cached descriptor per file.

    The folder must be private to the gateway's user (see :func:`private_folder`), may hold
    only regular files of that user (and the quarantine folder), and files are opened with
    ``O_NOFOLLOW``: a planted symbolic link never makes the spool write somewhere else.
    """

    QUARANTINE = "quarantine"

    def __init__(self, folder: str):
        self.folder = private_folder(folder)
        self._check_entries()
        self._fds: Dict[str, int] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return self.folder

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def _check_entries(self) -> None:
        """Refuse to start on a folder holding links, devices, or another user's files."""
        me = os.geteuid()
        for name in os.listdir(self.folder):
            path = self._path(name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise _link_refused(path)
            if stat.S_ISDIR(st.st_mode) and name == self.QUARANTINE:
                continue
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFolderError(f"{path} is not a regular file: move it out of {self.folder}")
            if st.st_uid != me:
                raise UnsafeFolderError(f"{path} belongs to {_owner(st.st_uid)}, not to {_owner(me)}: "
                                        f"give the folder to the gateway's user "
                                        f"(chown -R {_owner(me)} {self.folder})")

    def _fd(self, name: str) -> int:
        with self._lock:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._fds[name] = open_regular(self._path(name), os.O_RDWR | os.O_CREAT)
            return fd

    def listdir(self) -> List[str]:
        return [n for n in os.listdir(self.folder) if stat.S_ISREG(os.lstat(self._path(n)).st_mode)]

    def size(self, name: str) -> int:
        return os.lstat(self._path(name)).st_size

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
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
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
        os.makedirs(target, 0o700, exist_ok=True)
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
