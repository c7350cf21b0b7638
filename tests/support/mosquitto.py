"""A real Mosquitto broker for the tests, an MQTT subscriber, and a network path that can be cut.

``Broker`` runs the ``mosquitto`` binary on a free port with a generated config (anonymous,
password file, TLS with a private CA and client certificates), waits for its "running" log
line, and can be killed and restarted on the same port. ``Certificates`` makes the CA, server
and client certificates with the ``openssl`` command. ``Subscriber`` is a paho client that
records what it receives. ``TcpProxy`` sits between the gateway and the broker: it can hold
the broker's answers (PUBACKs) back, cut every connection with a reset, and refuse new ones.

Every wait is on a Condition with a deadline; nothing sleeps. Without a mosquitto binary the
tests that need one are skipped, loudly, except under CI (``CI`` set), where they fail.
"""

import base64
import getpass
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

import pytest

from tests.support.daemon import WAIT, free_port
from tests.support.proclog import ProcessLog

SEARCH = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
_RUNNING = re.compile(r"mosquitto version \S+ running")


def find_program(name: str) -> Optional[str]:
    """``name`` on PATH or in the sbin folders packages install mosquitto into."""
    found = shutil.which(name)
    if found:
        return found
    for folder in SEARCH:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def mosquitto_binary() -> str:
    """The broker's path; fails under CI, skips (with the reason shown) elsewhere."""
    path = find_program("mosquitto")
    if path is None:
        message = ("mosquitto is not installed (apt-get install mosquitto): the MQTT tests need a "
                   "real broker")
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set, so they must run", pytrace=False)
        pytest.skip(message)
    return path


# -- certificates -----------------------------------------------------------------------------
_OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class Certificates:
    """A private CA, a server certificate for localhost/127.0.0.1 and a client certificate,
    plus a second CA that signed nothing here (for "not trusted"). EC keys: made in ms."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cnf = self.folder / "openssl.cnf"
        self._cnf.write_text(_OPENSSL_CNF)
        self.ca_crt, self.ca_key = self._ca("ca", "OEM Gateway test CA")
        self.other_ca_crt, _ = self._ca("other-ca", "Someone else's CA")
        self.server_crt, self.server_key = self._leaf("server", "localhost", "server")
        self.client_crt, self.client_key = self._leaf("client", "gateway", "client")

    def _openssl(self, *args: str) -> None:
        openssl = find_program("openssl")
        if openssl is None:
            pytest.fail("the openssl command is needed to make test certificates", pytrace=False)
        result = subprocess.run([openssl, *args], cwd=self.folder, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")

    def _ca(self, name: str, common_name: str):
        crt, key = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        self._openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2",
                      "-subj", f"/CN={common_name}", "-config", str(self._cnf), "-extensions", "ca")
        return crt, key

    def _leaf(self, name: str, common_name: str, extensions: str):
        crt, key, csr = (self.folder / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}",
                      "-config", str(self._cnf))
        self._openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_crt), "-CAkey", str(self.ca_key),
                      "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-out", str(crt),
                      "-days", "2", "-extfile", str(self._cnf), "-extensions", extensions)
        return crt, key


def password_file(path: Path, users: dict) -> Path:
    """A mosquitto password file: made by ``mosquitto_passwd`` when it is there, else written in
    mosquitto's salted SHA-512 format (``$6$``), which every 2.x broker reads."""
    path = Path(path)
    tool = find_program("mosquitto_passwd")
    if tool is not None:
        path.write_text("")
        for user, password in users.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
        return path
    lines = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.sha512(password.encode() + salt).digest()
        lines.append(f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the broker -------------------------------------------------------------------------------
class Broker:
    """``mosquitto -c <generated config>`` on 127.0.0.1:``port``.

    ``users``: name -> password (anonymous clients are then refused); ``tls``: Certificates
    (the listener speaks TLS only; ``require_certificate`` asks clients for theirs);
    ``acl``: the text of an ACL file; ``persistence``: sessions, their queued messages and the
    retained messages are saved in the folder (at a clean stop, and every second) and survive
    a restart, as on a central broker.
    """

    def __init__(self, folder: Path, users: Optional[dict] = None,
                 tls: Optional[Certificates] = None, require_certificate: bool = False,
                 acl: Optional[str] = None, persistence: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.output = ProcessLog("mosquitto")
        self.proc: Optional[subprocess.Popen] = None
        config = [f"listener {self.port} 127.0.0.1",
                  f"allow_anonymous {'false' if users else 'true'}",
                  f"user {getpass.getuser()}",          # as root, do not drop to 'mosquitto'
                  *([f"persistence true", f"persistence_location {self.folder}/", "autosave_interval 1"]
                    if persistence else ["persistence false"]),
                  "log_dest stderr",
                  "log_type error", "log_type warning", "log_type notice", "log_type information",
                  "connection_messages true",
                  "max_queued_messages 100000"]
        if users:
            config.append(f"password_file {password_file(self.folder / 'passwords', users)}")
        if acl is not None:
            (self.folder / "acl").write_text(acl)
            config.append(f"acl_file {self.folder / 'acl'}")
        if tls:
            config += [f"cafile {tls.ca_crt}", f"certfile {tls.server_crt}", f"keyfile {tls.server_key}",
                       f"require_certificate {'true' if require_certificate else 'false'}"]
        self.config_path = self.folder / "mosquitto.conf"
        self.config_path.write_text("\n".join(config) + "\n")

    def start(self) -> "Broker":
        """Start the broker and return once it accepts connections."""
        runs = self.output.count(_RUNNING.pattern)
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.config_path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace")
        self.output.follow(self.proc)
        self.output.wait_for(_RUNNING.pattern, count=runs + 1)
        return self

    @property
    def log(self) -> str:
        return self.output.text

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = WAIT) -> None:
        self.output.wait_for(pattern, count, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker with ``sig`` (SIGKILL: as a crash) and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(WAIT)
        self.output.join()

    def restart(self, sig: int = signal.SIGTERM) -> "Broker":
        self.stop(sig)
        return self.start()

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(signal.SIGKILL)


# -- a subscriber -----------------------------------------------------------------------------
class Received(NamedTuple):
    topic: str
    payload: str
    retain: bool


class Subscriber:
    """A paho client subscribed to ``topics`` that records every message, in arrival order.

    It reconnects (and subscribes again) by itself after the broker restarts; ``subscribed()``
    waits for the broker's SUBACK of the latest connection.
    """

    def __init__(self, port: int, topics=("#",), username: Optional[str] = None,
                 password: Optional[str] = None, tls: Optional[Certificates] = None,
                 client_id: Optional[str] = None, clean_session: bool = True):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._sync_topic = f"test/sync/{free_port()}"
        self.topics = list(topics) + [self._sync_topic + "/#"]
        self.messages: List[Received] = []
        self._cond = threading.Condition()
        self._subacks = 0
        self._syncs = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-subscriber-{free_port()}",
                                  clean_session=clean_session)
        self.client.reconnect_delay_set(1, 1)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set_context(_client_context(tls))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("localhost" if tls else "127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.subscribed()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self._subacks += 1
            self._cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.messages.append(Received(message.topic, message.payload.decode("utf-8", "replace"),
                                          bool(message.retain)))
            self._cond.notify_all()

    def subscribed(self, count: int = 1) -> None:
        """Wait until the broker acknowledged the subscription of ``count`` connections."""
        self.wait(lambda _: self._subacks >= count, f"{count} SUBACKs")

    def wait(self, predicate: Callable[[List[Received]], bool], what: str = "condition",
             timeout: float = WAIT) -> List[Received]:
        """Block until ``predicate(messages)``; return the messages."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout):
                raise AssertionError(f"subscriber: {what} not met within {timeout} s; "
                                     f"{len(self.messages)} messages, last: {self.messages[-5:]}")
            return list(self.messages)

    def sync(self) -> None:
        """Return once every message the broker had for this subscriber before now is in hand
        (a marker published now comes after them: a broker keeps a client's messages in order)."""
        self._syncs += 1
        marker = f"{self._sync_topic}/{self._syncs}"
        self.publish(marker, "")
        self.wait(lambda messages: any(m.topic == marker for m in messages), "the sync marker")

    def on(self, topic: str) -> List[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        """Publish (QoS 1) and wait for the broker's PUBACK."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _client_context(certs: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca_crt))
    context.load_cert_chain(str(certs.client_crt), str(certs.client_key))
    return context


def retained(port: int, topic: str, **kwargs) -> Optional[Received]:
    """What a new subscriber to ``topic`` is given at once: the retained message, or None."""
    subscriber = Subscriber(port, [topic], **kwargs)
    try:
        subscriber.sync()
        found = subscriber.on(topic)
        return found[0] if found else None
    finally:
        subscriber.close()


# -- a network path that can fail -------------------------------------------------------------
class TcpProxy:
    """Forwards connections from 127.0.0.1:``port`` to ``target_port``, and can fail like a network.

    ``lose_pubacks_after(n)``: from now on, forward ``n`` more PUBACKs from the server, then lose
    the rest (the client's messages still reach the broker; it never learns they did);
    ``cut()``: reset every connection (new ones work normally); ``refuse()``: reset new
    connections at once; ``allow()``: back to normal. All socket work happens on the proxy's
    thread; each call returns once it is done.
    """

    PUBACK = 4

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: List[list] = []          # [client, server, bytes from the server not yet framed]
        self._pubacks_left: Optional[int] = None
        self._refusing = False
        self._commands: List[tuple] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def lose_pubacks_after(self, count: int) -> None:
        self._do("lose", count)

    def cut(self) -> None:
        self._do("cut")

    def refuse(self) -> None:
        self._do("refuse")

    def allow(self) -> None:
        self._do("allow")

    def close(self) -> None:
        self._do("close")
        self._thread.join(WAIT)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _do(self, command: str, argument=None) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((command, argument, done))
        os.write(self._wake_w, b"x")
        if not done.wait(WAIT):
            raise AssertionError(f"proxy did not carry out {command!r}")

    def _run_commands(self) -> None:
        os.read(self._wake_r, 1024)
        with self._lock:
            commands, self._commands = self._commands, []
        for command, argument, done in commands:
            if command == "lose":
                self._pubacks_left = argument
            elif command == "refuse":
                self._refusing = True
            elif command == "allow":
                self._pubacks_left, self._refusing = None, False
            elif command in ("cut", "close"):
                self._pubacks_left = None   # what comes after a cut is a new, working path
                for client, server, _ in self._pairs:
                    _reset(client)
                    _reset(server)
                self._pairs = []
                if command == "close":
                    self._listener.close()
                    self._running = False
            done.set()

    def _serve(self) -> None:
        while self._running:
            watched = [self._listener, self._wake_r]
            for client, server, _ in self._pairs:
                watched += [client, server]
            ready, _, _ = select.select(watched, [], [])
            if self._wake_r in ready:
                self._run_commands()
                continue
            if self._listener in ready:
                self._accept()
            for pair in list(self._pairs):
                client, server, _ = pair
                ok = True
                if client in ready:
                    ok = self._pass(client, server)
                if ok and server in ready:
                    ok = self._from_server(pair)
                if not ok:
                    self._pairs.remove(pair)
                    _reset(client)
                    _reset(server)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        if self._refusing:
            _reset(client)
            return
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=WAIT)
        except OSError:
            _reset(client)
            return
        self._pairs.append([client, server, b""])

    @staticmethod
    def _pass(source: socket.socket, sink: socket.socket) -> bool:
        try:
            data = source.recv(65536)
            if not data:
                return False
            sink.sendall(data)
            return True
        except OSError:
            return False

    def _from_server(self, pair: list) -> bool:
        """Forward the server's whole MQTT packets, losing PUBACKs as asked."""
        client, server, pending = pair
        try:
            data = server.recv(65536)
            if not data:
                return False
            pending += data
            out = b""
            while True:
                size = _packet_size(pending)
                if size is None:
                    break
                packet, pending = pending[:size], pending[size:]
                if packet[0] >> 4 == self.PUBACK and self._pubacks_left is not None:
                    if self._pubacks_left <= 0:
                        continue
                    self._pubacks_left -= 1
                out += packet
            pair[2] = pending
            if out:
                client.sendall(out)
            return True
        except OSError:
            return False


def _packet_size(data: bytes) -> Optional[int]:
    """The length of the whole MQTT packet at the start of ``data``, or None if incomplete."""
    length, shift = 0, 0
    for index in range(1, min(len(data), 5)):
        byte = data[index]
        length += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            total = index + 1 + length
            return total if len(data) >= total else None
    return None


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a cut network path looks to both ends."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
