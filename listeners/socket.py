"""TCP socket listener: any program on the machine (or the network) sends frame lines.

``printf '14 15 26\\r\\n' | nc localhost 50011``. Clients may keep their connection open as
long as they like and send any number of lines; lines may be split across packets.
"""

import errno
import socket
from typing import Dict, Optional

from gateway.lines import LineSplitter
from listeners.base import Listener

RECV_SIZE = 65536


class SocketListener(Listener):
    SPEC = """
    bind = string(default=None)
    port = integer(min=1, max=65535, default=50011)
    port_nb = integer(min=1, max=65535, default=None)
    """

    LIVE_SETTINGS = Listener.LIVE_SETTINGS | {"max_line"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._server: Optional[socket.socket] = None
        self._clients: Dict[socket.socket, LineSplitter] = {}

    # -- settings -----------------------------------------------------------------------
    @property
    def address(self):
        """``(host, port)`` to listen on; a legacy ``port_nb``-only section keeps all interfaces."""
        port = self.settings["port_nb"] or self.settings["port"]
        bind = self.settings["bind"]
        if bind is None:
            bind = "0.0.0.0" if self.settings["port_nb"] else "127.0.0.1"
        return bind, port

    def apply_settings(self, changed: set) -> None:
        for splitter in self._clients.values():
            splitter.max_line = self.settings["max_line"]

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = socket.socket(family, socket.SOCK_STREAM)
        try:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, port))
            server.listen(128)
        except OSError as exc:
            server.close()
            hint = " (another program, or another listener, is using that port)" \
                if exc.errno == errno.EADDRINUSE else ""
            raise OSError(exc.errno, f"{self}: cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
        server.setblocking(False)
        self._server = server
        self.loop.add_reader(server, self._accept)
        self.log.info("%s: listening on %s:%d", self, host, port)
        if self.settings["port_nb"] and self.settings["bind"] is None:
            self.log.info("%s: listening on all interfaces as the original gateway did; "
                          "set 'bind = 127.0.0.1' to accept local programs only", self)

    def close(self) -> None:
        for client in list(self._clients):
            self._drop_client(client)
        if self._server is not None:
            self.loop.remove_reader(self._server)
            self._server.close()
            self._server = None
        super().close()

    # -- events -------------------------------------------------------------------------
    def _accept(self) -> None:
        try:
            client, peer = self._server.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE and friends: log, keep serving the others
            self.bad_input("%s: cannot accept a connection: %s", self, exc)
            return
        client.setblocking(False)
        self._clients[client] = LineSplitter(self.settings["max_line"])
        self.loop.add_reader(client, lambda: self._read(client))
        self.log.debug("%s: connection from %s", self, _peer_text(peer))

    def _read(self, client: socket.socket) -> None:
        splitter = self._clients.get(client)
        if splitter is None:
            return
        try:
            data = client.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.log.debug("%s: connection error: %s", self, exc)
            data = b""
        if data:
            for line in splitter.feed(data):
                self.handle_line(line)
            return
        # The client closed: what it sent last without a newline is still a whole line.
        rest = splitter.discard_partial()
        if rest:
            for line in splitter.feed(rest + b"\n"):
                self.handle_line(line)
        self.log.debug("%s: connection closed by the client", self)
        self._drop_client(client)

    def _drop_client(self, client: socket.socket) -> None:
        self.loop.remove_reader(client)
        self._clients.pop(client, None)
        client.close()


def _peer_text(peer) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
