"""TCP socket listener: any program on the machine (or the network) sends frame lines.

``printf '14 15 26\\r\\n' > /dev/tcp/127.0.0.1/50011`` (bash). Clients may keep their connection
open as long as they like and send any number of lines; lines may be split across packets.

Connections that hold a place without using it cannot lock good clients out. A connection is
*active* when it sends a complete line; bytes that never make a line (a trickle) do not count.
When ``max_clients`` connections are open, a new one is let in and room is made by closing
the connection idle the longest: first among those that have never sent a line (or, with a
``token``, not the token), oldest first; only when there are none, the one whose last line is
the oldest. So a device that sends a line now and then keeps its connection however many
silent ones arrive, and a new client's first lines are read before it could be pushed out.
With a ``token``, a connection that has not sent it within ``TOKEN_WAIT`` seconds is closed;
with ``idle_timeout``, any connection without a complete line for that long is closed.
``max_clients`` is capped by the number of files the process may open (the soft limit is
raised to the hard limit if that helps); the log says so once. Near that limit a listener
keeps its number of connections level (closing its idle-longest for each new one), so that
RESERVED_FILES descriptors stay for the spool and the buffers; each listener may still use a
few of them (FEW_CLIENTS), so that a flood on one listener cannot lock another's clients out.
Out of descriptors all the same, it stops accepting for a moment rather than spin.
"""

import errno
import hmac
import ipaddress
import logging
import os
import resource
import socket
import time
from collections import OrderedDict
from typing import Iterable, List, Optional, Tuple

from gateway.config import ANY_ADDRESS, is_host
from gateway.lines import LineSplitter
from gateway.logs import LogThrottle
from listeners.base import Listener

RECV_SIZE = 65536
STOP_READS = 16        # reads per client at a stop (1 MiB): what it sent is read, a flood cannot hold the stop
TOKEN_WAIT = 10.0      # s a new connection has to send the token, when one is set
RESERVED_FILES = 64    # descriptors kept for the rest of the gateway (spool, servers, ports)
ACCEPT_PAUSE = 1.0     # s without accepting when the process is out of descriptors
FEW_CLIENTS = 8        # places a listener keeps near that limit, whatever other listeners hold
LOW_ON_FILES = "the process is near its limit of open files"
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Client:
    """One connection: its line splitter, when it last sent a line (or connected), whether it
    is let in (sent the token, or none is needed)."""

    __slots__ = ("splitter", "peer", "last_line", "authenticated")

    def __init__(self, max_line: int, peer: str, authenticated: bool):
        self.splitter = LineSplitter(max_line)
        self.peer = peer
        self.last_line = time.monotonic()
        self.authenticated = authenticated


class SocketListener(Listener):
    SPEC = """
    bind = string(default=None)
    port = integer(min=1, max=65535, default=50011)
    allow = force_list(default=list())
    max_clients = integer(min=1, max=10000, default=64)
    idle_timeout = float(min=0, max=604800, default=0)
    token = string(default='')
    """
    SAMPLE = """
    # A TCP socket any program can send lines to:  printf '14 15 26\\r\\n' > /dev/tcp/127.0.0.1/50011
    [[...]]
    # Address to listen on. 127.0.0.1 accepts only programs on this machine; 0.0.0.0 (or
    # :: for IPv6) accepts the whole network (warned about unless 'allow' or 'token' is
    # set). A legacy section with only 'port_nb' and no 'bind' listens on all interfaces,
    # as the original gateway did.
    bind = 127.0.0.1
    # TCP port. (The original name 'port_nb' is accepted too.)
    port = 50011
    # Addresses or networks allowed to connect, e.g. 192.168.1.0/24, 10.0.0.7 (empty:
    # anyone who can reach 'bind'). Others are refused and logged.
    allow
    # Most connections at once. When full, a new connection is let in and the one idle
    # longest is closed (one that never sent a whole line first); logged, rate-limited.
    max_clients
    # Close a connection that sends no complete line for this many seconds (0 = never).
    idle_timeout
    # If set, the first line of every connection must be this token (a shared secret;
    # never logged); a connection that starts otherwise, or sends nothing for 10 s, is closed.
    token
    """
    SECRETS = ("token",)
    RENAMED = {"port_nb": "port"}
    ACCESS_DEFAULTS = {"allow": [], "max_clients": 64, "idle_timeout": 0.0, "token": ""}
    LIVE_SETTINGS = Listener.LIVE_SETTINGS | {"max_line", "allow", "max_clients", "idle_timeout", "token"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._server: Optional[socket.socket] = None
        # Both in order of the last complete line (or of connecting): the first is idle longest.
        self._silent: "OrderedDict[socket.socket, Client]" = OrderedDict()    # no line yet
        self._talking: "OrderedDict[socket.socket, Client]" = OrderedDict()
        self._allowed = self._networks(self.settings["allow"])
        self._capacity = self.settings["max_clients"]
        self._fd_ceiling = float("inf")   # a descriptor this high leaves too few for the rest
        self._idle_timer = None
        self._accept_timer = None
        self.refused = LogThrottle(self.log, logging.WARNING, 60.0, schedule=self.loop.call_later)
        self.evicted = LogThrottle(self.log, logging.WARNING, 60.0, schedule=self.loop.call_later)
        self.idle_closed = LogThrottle(self.log, logging.INFO, 60.0, schedule=self.loop.call_later)

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = []
        for item in settings.get("allow") or []:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                problems.append(f"allow: {item!r} is not an address or network (e.g. 192.168.1.0/24)")
        bind = settings.get("bind")
        if bind and not is_host(bind):
            problems.append(f"bind = {bind}: not an IP address of this machine (e.g. 127.0.0.1, "
                            "0.0.0.0 for every interface, :: for IPv6) nor a host name")
        return problems

    @classmethod
    def modernise(cls, settings: dict, renamed) -> dict:
        """``bind`` made explicit: a 2013 section with ``port_nb`` and no ``bind`` listens on
        every interface, as the original gateway did; otherwise 127.0.0.1."""
        modern = dict(settings)
        if modern.get("bind") is None:
            modern["bind"] = "0.0.0.0" if renamed.get("port") == "port_nb" else "127.0.0.1"
        return modern

    @classmethod
    def warn_settings(cls, settings: dict) -> List[str]:
        if settings.get("token") or settings.get("allow"):
            return []
        host, port = cls.listen_address(settings)
        return exposure_warning(host, port, "bind", restrictable=True)

    @classmethod
    def listen_address(cls, settings: dict) -> Tuple[str, int]:
        """``(host, port)`` to listen on."""
        bind = settings.get("bind")
        return ("127.0.0.1" if bind is None else bind), settings["port"]

    @classmethod
    def claims(cls, settings: dict) -> List[Tuple[str, tuple]]:
        """The TCP port this listener needs (see gateway.config: two claims of one port clash)."""
        return [("port", ("tcp", *cls.listen_address(settings)))]

    @staticmethod
    def _networks(allow):
        return [ipaddress.ip_network(item, strict=False) for item in allow or []]

    # -- settings -----------------------------------------------------------------------
    @property
    def address(self):
        return self.listen_address(self.settings)

    @property
    def clients(self) -> int:
        return len(self._silent) + len(self._talking)

    def apply_settings(self, changed: set) -> None:
        for client in self._all_clients():
            client.splitter.max_line = self.settings["max_line"]
        self._allowed = self._networks(self.settings["allow"])
        if "max_clients" in changed:
            self._capacity = self._room_for(self.settings["max_clients"])
        self._reschedule_idle_check()

    # -- the contract -------------------------------------------------------------------
    def open(self) -> None:
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = socket.socket(family, socket.SOCK_STREAM)
        try:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, port))
            server.listen(socket.SOMAXCONN)
        except OSError as exc:
            server.close()
            hint = " (another program, or another listener, is using that port)" \
                if exc.errno == errno.EADDRINUSE else ""
            raise OSError(exc.errno, f"{self}: cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
        server.setblocking(False)
        self._server = server
        self._capacity = self._room_for(self.settings["max_clients"])
        self.loop.add_reader(server, self._accept)
        self.log.info("%s: listening on %s:%d", self, host, port)

    def close(self) -> None:
        """Whole lines a client sent before the stop and the loop had not read yet are read
        first (a half line is dropped: the client had not finished it)."""
        for sock in list(self._silent) + list(self._talking):
            for _ in range(STOP_READS):
                if not self._read(sock):
                    break
            self._drop_client(sock)
        for timer in (self._idle_timer, self._accept_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._accept_timer = None
        for throttle in (self.refused, self.evicted, self.idle_closed):
            throttle.flush()
        if self._server is not None:
            self.loop.remove_reader(self._server)
            self._server.close()
            self._server = None
        super().close()

    # -- accepting ----------------------------------------------------------------------
    def _accept(self) -> None:
        try:
            sock, peer = self._server.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._accept_failed(exc)
            return
        peer_text = _peer_text(peer)
        why = self._refusal(peer)
        if why:
            self.refused("%s: refused a connection from %s (%s)", self, peer_text, why)
            sock.close()
            return
        if self.clients >= self._capacity:
            self._make_room(f"already {self.clients} clients, the 'max_clients' limit")
        elif sock.fileno() >= self._fd_ceiling:
            self._keep_files_in_reserve()
        sock.setblocking(False)
        self._silent[sock] = Client(self.settings["max_line"], peer_text, not self.settings["token"])
        self.loop.add_reader(sock, lambda: self._read(sock))
        self.log.debug("%s: connection from %s", self, peer_text)
        if self._idle_timer is None:
            self._reschedule_idle_check()

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors or memory: make room, or stop accepting for a moment (the
        listening socket stays readable: retrying at once would spin). Any other error is one
        connection's (reset before it was accepted): the next is accepted as usual."""
        if exc.errno not in OUT_OF_RESOURCES:
            self.log.debug("%s: a connection failed before it was accepted: %s", self, exc)
            return
        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._make_room(LOW_ON_FILES):
            return   # the next loop pass accepts
        self.bad_input("%s: cannot accept a connection: %s; not accepting for %g s",
                       self, exc.strerror or exc, ACCEPT_PAUSE)
        self.loop.remove_reader(self._server)
        self._accept_timer = self.loop.call_later(ACCEPT_PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_timer = None
        if self._server is not None:
            self.loop.add_reader(self._server, self._accept)

    def _make_room(self, why: str) -> bool:
        """Close the connection idle the longest (a silent one first); False if there is none."""
        group = self._silent or self._talking
        if not group:
            return False
        sock, client = next(iter(group.items()))
        what = "connected" if group is self._silent else "last line"
        self.evicted("%s: closed the connection from %s (%s %.0f s ago) to make room for a new one: %s",
                     self, client.peer, what, time.monotonic() - client.last_line, why)
        self._drop_client(sock)
        return True

    def _keep_files_in_reserve(self) -> None:
        """Near the open-file limit, close idle connections of this listener until
        RESERVED_FILES descriptors are left for the rest of the gateway; but each listener
        keeps FEW_CLIENTS places (taken from the reserve), so that a flood on another listener
        cannot lock its clients out. Called only when a new descriptor is numbered this high
        (the lowest free number is given first), as the count costs a directory listing."""
        if self.clients < FEW_CLIENTS:
            return
        try:
            in_use = len(os.listdir("/proc/self/fd"))
        except OSError:
            in_use = self._fd_ceiling
        while in_use >= self._fd_ceiling and self.clients >= FEW_CLIENTS:
            self._make_room(LOW_ON_FILES)
            in_use -= 1

    def _refusal(self, peer) -> Optional[str]:
        """Why a new connection from ``peer`` is not let in, or None."""
        if self._allowed and isinstance(peer, tuple):
            address = ipaddress.ip_address(peer[0].split("%")[0])
            if getattr(address, "ipv4_mapped", None):
                address = address.ipv4_mapped
            if not any(address in network for network in self._allowed):
                return "not in 'allow'"
        return None

    def _room_for(self, wanted: int) -> int:
        """How many clients this process can hold, up to ``wanted``, raising its limit if it can;
        sets the descriptor number from which room is made whatever the client count."""
        room, soft = files_left_for(wanted)
        self._fd_ceiling = soft - RESERVED_FILES
        if room < wanted:
            self.log.warning("%s: max_clients = %d, but this process may open only %d files: at most "
                             "%d connections are kept (raise LimitNOFILE= in the service, or ulimit -n)",
                             self, wanted, soft, room)
        return room

    # -- idle connections -----------------------------------------------------------------
    def _limits(self) -> Tuple[float, float]:
        """Seconds a silent connection, and a talking one, may go without a line (inf: no limit)."""
        idle = self.settings["idle_timeout"] or float("inf")
        silent = min(idle, TOKEN_WAIT) if self.settings["token"] else idle
        return silent, idle

    def _reschedule_idle_check(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        due = [client.last_line + limit
               for group, limit in zip((self._silent, self._talking), self._limits())
               if group and limit != float("inf")
               for client in (next(iter(group.values())),)]
        if due:
            self._idle_timer = self.loop.call_later(min(due) - time.monotonic(), self._close_idle)

    def _close_idle(self) -> None:
        self._idle_timer = None
        now = time.monotonic()
        for group, limit in zip((self._silent, self._talking), self._limits()):
            while group:
                sock, client = next(iter(group.items()))
                if now - client.last_line < limit:
                    break
                if not client.authenticated:
                    self.idle_closed("%s: closing %s: no token within %g s", self, client.peer, limit)
                else:
                    self.idle_closed("%s: closing %s: no complete line for %g s", self, client.peer, limit)
                self._drop_client(sock)
        self._reschedule_idle_check()

    # -- reading ------------------------------------------------------------------------
    def _read(self, sock: socket.socket) -> bool:
        """Read once from a client; False when there was nothing (more) to read."""
        client = self._talking.get(sock) or self._silent.get(sock)
        if client is None:
            return False
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.log.debug("%s: connection error: %s", self, exc)
            data = b""
        if data:
            lines = client.splitter.feed(data)
        else:
            # The client closed: what it sent last without a line end is still a whole line.
            rest = client.splitter.discard_partial()
            lines = client.splitter.feed(rest + b"\n") if rest else []
        spoke = False
        for line in lines:
            if isinstance(line, str) and not line.strip():
                continue
            spoke = True
            if not client.authenticated:
                if not self._check_token(client, line):
                    self._drop_client(sock)
                    return False
                continue
            self.handle_line(line)
        if not data:
            self.log.debug("%s: connection closed by the client", self)
            self._drop_client(sock)
            return False
        if spoke:
            client.last_line = time.monotonic()
            if self._silent.pop(sock, None) is not None:
                self._talking[sock] = client
            else:
                self._talking.move_to_end(sock)
        return True

    def _check_token(self, client: Client, line) -> bool:
        """The first line of a connection must be the token when one is set."""
        if isinstance(line, str) and hmac.compare_digest(line.strip().encode(), self.settings["token"].encode()):
            client.authenticated = True
            return True
        self.refused("%s: closed the connection from %s: its first line was not the token", self, client.peer)
        self.stats.frames_bad += 1
        return False

    def _all_clients(self) -> Iterable[Client]:
        return list(self._silent.values()) + list(self._talking.values())

    def _drop_client(self, sock: socket.socket) -> None:
        self.loop.remove_reader(sock)
        if self._silent.pop(sock, None) is None:
            self._talking.pop(sock, None)
        sock.close()


def exposure_warning(host: str, port: int, key: str, restrictable: bool) -> List[str]:
    """A warning (in a list, or none) when a port that takes lines is open to every network:
    ``key`` is the bind setting."""
    if host not in ANY_ADDRESS:
        return []
    text = (f"{key} = {host or '0.0.0.0'}: any computer that can reach this one may send lines to "
            f"port {port}; set '{key} = 127.0.0.1' to accept local programs only")
    if restrictable:
        text += (", or 'allow = 192.168.1.0/24' (your network) or a 'token' "
                 "('allow = 0.0.0.0/0, ::/0' says everyone is meant)")
    return [text]


def files_left_for(wanted: int) -> Tuple[int, float]:
    """``(room, soft limit)``: how many more descriptors (up to ``wanted``) the process may open
    while keeping RESERVED_FILES for the rest, and its limit of open files, raised towards the
    hard limit if that is needed (inf: no limit)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        in_use = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError):
        return wanted, float("inf")
    need = in_use + wanted + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted, float("inf")
    return max(1, min(wanted, soft - in_use - RESERVED_FILES)), soft


def _peer_text(peer) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
