"""An example output type, written as a new destination is: one file, no core file touched.

``graphite``: each value as a line of Graphite's plaintext protocol
(``PREFIX.NODE.NAME VALUE TIME``) over TCP, one connection per batch. Registered by a line in
``buffers/__init__.py`` (``"graphite": "tests.support.outputs:GraphiteBuffer"``), or, as the tests do,
in a registry of their own.
"""

import math
import socket
from typing import List, Optional

from buffers.base import Buffer, RejectedError, TransientError
from gateway.formats import number_text
from gateway.frame import Frame


class GraphiteBuffer(Buffer):
    SPEC = """
    host = string(default='')
    port = integer(min=1, max=65535, default=2003)
    prefix = string(default='emon')
    timeout = float(min=0.1, max=300, default=10)
    """

    def configure(self) -> None:
        self.prefix = self.settings["prefix"].strip(".")

    def inactive_reason(self) -> Optional[str]:
        return None if self.settings["host"] else "no host set"

    def check(self, frame: Frame) -> Optional[str]:
        return None if all(math.isfinite(v) for v in frame.values) else "Graphite takes finite numbers only"

    def line(self, frame: Frame) -> str:
        node = str(frame.node).replace(" ", "_").replace(".", "_")
        return "".join(f"{self.prefix}.{node}.{name.replace('.', '_')} {number_text(value)} {int(frame.time)}\n"
                       for name, value in frame.named_values().items())

    def send(self, batch: List[Frame]) -> None:
        try:
            text = "".join(self.line(frame) for frame in batch).encode("ascii")
        except UnicodeEncodeError as exc:   # a name from [nodes] Graphite cannot take
            raise RejectedError(f"not ASCII: {exc.object[exc.start:exc.end]!r}") from None
        address = (self.settings["host"], self.settings["port"])
        try:
            with socket.create_connection(address, timeout=self.settings["timeout"]) as conn:
                conn.sendall(text)
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)   # the server closes once it has read everything
        except OSError as exc:
            raise TransientError(f"{address[0]}:{address[1]}: {exc.strerror or exc}") from None
