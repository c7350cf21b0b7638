"""The daemon as a subprocess, the way the service runs it: one harness for the tests and the
benchmarks (``bench/harness.py`` adds resource figures to it), plus the TCP and file helpers
every end-to-end test uses."""

import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Optional

from tests.support.proclog import WAIT, ProcessLog

ROOT = Path(__file__).resolve().parents[2]
DAEMON = ROOT / "oemgateway.py"
FIXTURES = ROOT / "tests" / "fixtures"
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
READY = r"INFO oemgateway: ready"
UNBOUND = r" ERROR .*(cannot listen on|cannot serve the .* on) "   # a port the daemon could not bind
FREE_PORTS_FROM = 20000   # free_port() picks above the ports services commonly use

# ``runtime_dir``/``state_dir`` of GatewayProcess: folders private to the config's folder.
BESIDE_CONFIG = "beside the config"

__all__ = ["ROOT", "DAEMON", "FIXTURES", "WAIT", "GatewayProcess", "PortNotBound", "free_port", "send_lines",
           "runtime_dir_for", "rewrite_config", "shipped_config"]


class PortNotBound(RuntimeError):
    """The gateway said it is ready, but a port of its config could not be bound."""


def free_port() -> int:
    """A TCP port nobody uses now, below the kernel's ephemeral range: a port from that range
    (what binding port 0 gives) may become any connection's local port before the daemon binds
    it, which makes the daemon's bind fail (or a client connect to itself)."""
    ephemeral_low = _ephemeral_low()
    candidates = [random.randrange(FREE_PORTS_FROM, ephemeral_low) for _ in range(1000)] \
        if ephemeral_low - FREE_PORTS_FROM >= 1000 else []
    for port in candidates + [0]:   # 0: what the kernel picks, if nothing below its range is free
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))   # free on every address, so on any the daemon binds
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free TCP port")


def _ephemeral_low() -> int:
    """The lowest port the kernel gives connections (Linux; its default elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def send_lines(port: int, data: bytes, host: str = "127.0.0.1") -> None:
    """Connect, send ``data``, close: what ``printf ... | nc host port`` does."""
    with socket.create_connection((host, port), timeout=WAIT) as s:
        s.sendall(data)


def shipped_config() -> str:
    """The shipped ``oemgateway.conf`` as committed, never the copy in the checkout that its
    user may have edited (an API key filled in, other listeners). Outside a git checkout (an
    unpacked release), the file itself."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:oemgateway.conf"], capture_output=True,
                              text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return (ROOT / "oemgateway.conf").read_text()


def rewrite_config(path: Path, text: str) -> None:
    """Replace a config file atomically, as editors do, with a new mtime."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(text))
    os.replace(tmp, path)


def runtime_dir_for(folder: Path) -> str:
    """A tmpfs folder belonging to a test folder (removed by the ``gateway_factory`` fixture)."""
    return os.path.join(TMPFS, "oemgateway-test-" + hashlib.sha1(str(folder).encode()).hexdigest()[:16])


class GatewayProcess:
    """``oemgateway.py`` running as a subprocess, the way the service runs it.

    Its log (stdout and stderr) is read by a thread into a :class:`ProcessLog`, so callers wait
    for a log line instead of sleeping. The spool's folders come as systemd's
    ``RuntimeDirectory=``/``StateDirectory=`` would give them: by default the hot tier on a
    tmpfs and the cold tier in ``state/``, both belonging to the config's folder (a restarted
    daemon finds its own again); ``None`` leaves the variable as the environment has it.
    ``daemon`` runs another ``oemgateway.py`` (e.g. of an older commit); ``keep_lines`` bounds
    the log kept (a long benchmark run).
    """

    def __init__(self, config_path: Path, extra_args=(), env=None, *, daemon: Optional[Path] = None,
                 runtime_dir: Optional[str] = BESIDE_CONFIG, state_dir: Optional[str] = BESIDE_CONFIG,
                 keep_lines: Optional[int] = None):
        self.config_path = Path(config_path)
        self.output = ProcessLog("the gateway", keep_lines)
        folder = self.config_path.parent
        folders = {"RUNTIME_DIRECTORY": runtime_dir_for(folder) if runtime_dir == BESIDE_CONFIG else runtime_dir,
                   "STATE_DIRECTORY": str(folder / "state") if state_dir == BESIDE_CONFIG else state_dir}
        self.env = dict(os.environ, **{name: value for name, value in folders.items() if value is not None},
                        **(env or {}))
        self.runtime_dir = self.env.get("RUNTIME_DIRECTORY")
        self.proc = subprocess.Popen(
            [sys.executable, str(daemon or DAEMON), "--config-file", str(self.config_path), *extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(folder),
            env=self.env, text=True, encoding="utf-8", errors="replace")
        self.output.follow(self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        return self.output.text

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = WAIT) -> str:
        """Block until ``count`` log lines match the regex ``pattern``; return the last match."""
        return self.output.wait_for(pattern, count, timeout)

    def wait_ready(self, timeout: float = WAIT, every_port: bool = True) -> "GatewayProcess":
        """Block until the gateway is ready. With ``every_port``, a gateway ready without a port
        its config names (taken, between ``free_port()`` and the daemon's bind, by another
        program: the daemon logs it and runs on) raises PortNotBound at once, rather than the
        test failing later at its first send, refused or answered by that other program."""
        ready = self.wait_for_log(READY, timeout=timeout)
        errors = [line for line in self.log.splitlines() if re.search(UNBOUND, line)]
        if every_port and errors:
            raise PortNotBound(f"the gateway started without one of its ports: {ready}\n" + "\n".join(errors))
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = WAIT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.output.join()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.output.join()
