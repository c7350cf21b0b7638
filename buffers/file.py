"""File buffer: appends readings to local CSV files, one per day (or rotated by size).

The destination that needs no server. Each row is ``time,node,value1,value2,...``; ``time``
is the Unix time the reading was received, to the millisecond. Paths are strftime patterns
(local time of the reading), relative to the config file's folder.
"""

import os
import time
from typing import List, Optional

from buffers.base import Buffer, TransientError
from gateway.frame import Frame

HEADER = "time,node,values\n"


class FileBuffer(Buffer):
    SPEC = """
    path = path(default='readings/%Y-%m-%d.csv')
    max_bytes = integer(min=0, max=1099511627776, default=0)
    backups = integer(min=0, max=1000, default=5)
    """

    def configure(self) -> None:
        self._close_file()

    def send(self, batch: List[Frame]) -> None:
        try:
            for path, rows in self._rows_by_file(batch):
                handle = self._open(path)
                handle.write("".join(rows))
                handle.flush()
                self._rotate_if_large(path)
        except OSError as exc:
            self._close_file()
            raise TransientError(f"cannot write {exc.filename or self.settings['path']}: "
                                 f"{exc.strerror or exc}") from None

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
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.name == path:
            return handle
        self._close_file()
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        handle = self._handle = open(path, "a", encoding="utf-8")
        if handle.tell() == 0:
            handle.write(HEADER)
        return handle

    def _rotate_if_large(self, path: str) -> None:
        limit = self.settings["max_bytes"]
        if not limit or self._handle.tell() < limit:
            return
        self._close_file()
        backups = self.settings["backups"]
        if backups == 0:
            os.remove(path)
            return
        for index in range(backups - 1, 0, -1):
            if os.path.exists(f"{path}.{index}"):
                os.replace(f"{path}.{index}", f"{path}.{index + 1}")
        os.replace(path, f"{path}.1")

    def _close_file(self) -> None:
        handle: Optional[object] = getattr(self, "_handle", None)
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass
            self._handle = None
