"""TCP socket listener: any program on the machine (or the network) sends frame lines.

``printf '14 15 26\\r\\n' | nc localhost 50011``. Clients may keep their connection open as
long as they like and send any number of lines; lines may be split across packets.
"""

import errno
import hmac
import ipaddress
import logging
import socket
import time
from typing import Dict, List, Optional

from gateway.lines import LineSplitter
from gateway.logs import LogThrottle
from listeners.base import Listener

RECV_SIZE = 65536


class Client:
    """One connection: its line splitter, when it last sent something, whether it is let in."""

    __slots__ = ("splitter", "peer", "last_active", "authenticated")

    def __init__(self, max_line: int, peer: str, authenticated: bool):
        self.splitter = LineSplitter(max_line)
        self.peer = peer
        self.last_active = time.monotonic()
        self.authenticated = authenticated


class SocketListener(Listener):
    SPEC = """
    bind = string(default=None)
    port = integer(min=1, max=65535, default=50011)
    port_nb = integer(min=1, max=65535, default=None)
    allow = force_list(default=list())
    max_clients = integer(min=1, max=10000, default=64)
    idle_timeout = float(min=0, default=0)
    token = string(default='')
    """
    SECRETS = ("token",)
    ACCESS_DEFAULTS = {"allow": [], "max_clients": 64, "idle_timeout": 0.0, "token": ""}
    LIVE_SETTINGS = Listener.LIVE_SETTINGS | {"max_line", "allow", "max_clients", "idle_timeout", "token"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._server: Optional[socket.socket] = None
        self._clients: Dict[socket.socket, Client] = {}
        self._allowed = self._networks(self.settings["allow"])
        self._idle_timer = None
        self.refused = LogThrottle(self.log, logging.WARNING, 60.0, schedule=self.loop.call_later)

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = []
        for item in settings.get("allow") or []:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                problems.append(f"allow: {item!r} is not an address or network (e.g. 192.168.1.0/24)")
        return problems

    @staticmethod
    def _networks(allow):
        return [ipaddress.ip_network(item, strict=False) for item in allow or []]

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
        for client in self._clients.values():
            client.splitter.max_line = self.settings["max_line"]
        self._allowed = self._networks(self.settings["allow"])
        self._schedule_idle_check()

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
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.refused.flush()
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
        peer_text = _peer_text(peer)
        why = self._refusal(peer)
        if why:
            self.refused("%s: refused a connection from %s (%s)", self, peer_text, why)
            client.close()
            return
        client.setblocking(False)
        self._clients[client] = Client(self.settings["max_line"], peer_text, not self.settings["token"])
        self.loop.add_reader(client, lambda: self._read(client))
        self.log.debug("%s: connection from %s", self, peer_text)
        self._schedule_idle_check()

    def _refusal(self, peer) -> Optional[str]:
        """Why a new connection from ``peer`` is not let in, or None."""
        if self._allowed and isinstance(peer, tuple):
            address = ipaddress.ip_address(peer[0].split("%")[0])
            if getattr(address, "ipv4_mapped", None):
                address = address.ipv4_mapped
            if not any(address in network for network in self._allowed):
                return "not in 'allow'"
        if len(self._clients) >= self.settings["max_clients"]:
            return f"already {len(self._clients)} clients, the 'max_clients'"
        return None

    def _schedule_idle_check(self) -> None:
        timeout = self.settings["idle_timeout"]
        if timeout and self._clients and self._idle_timer is None:
            self._idle_timer = self.loop.call_later(timeout / 2, self._close_idle_clients)

    def _close_idle_clients(self) -> None:
        self._idle_timer = None
        timeout = self.settings["idle_timeout"]
        deadline = time.monotonic() - timeout
        for sock, client in list(self._clients.items()):
            if timeout and client.last_active < deadline:
                self.log.info("%s: closing %s: nothing received for %g s", self, client.peer, timeout)
                self._drop_client(sock)
        self._schedule_idle_check()

    def _read(self, sock: socket.socket) -> None:
        client = self._clients.get(sock)
        if client is None:
            return
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.log.debug("%s: connection error: %s", self, exc)
            data = b""
        client.last_active = time.monotonic()
        if data:
            lines = list(client.splitter.feed(data))
        else:
            # The client closed: what it sent last without a newline is still a whole line.
            rest = client.splitter.discard_partial()
            lines = list(client.splitter.feed(rest + b"\n")) if rest else []
        for line in lines:
            if not client.authenticated:
                if not self._check_token(client, line):
                    self._drop_client(sock)
                    return
                continue
            self.handle_line(line)
        if not data:
            self.log.debug("%s: connection closed by the client", self)
            self._drop_client(sock)

    def _check_token(self, client: Client, line) -> bool:
        """The first line of a connection must be the token when one is set."""
        if isinstance(line, str) and hmac.compare_digest(line.strip().encode(), self.settings["token"].encode()):
            client.authenticated = True
            return True
        self.refused("%s: closed the connection from %s: its first line was not the token", self, client.peer)
        self.stats.frames_bad += 1
        return False

    def _drop_client(self, client: socket.socket) -> None:
        self.loop.remove_reader(client)
        self._clients.pop(client, None)
        client.close()


def _peer_text(peer) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
