"""The daemon as a subprocess, the way the service runs it: one harness for the tests and the
benchmarks (``bench/harness.py`` adds resource figures to it), plus the TCP and file helpers
every end-to-end test uses."""

import hashlib
import os
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

# ``runtime_dir``/``state_dir`` of GatewayProcess: folders private to the config's folder.
BESIDE_CONFIG = "beside the config"

__all__ = ["ROOT", "DAEMON", "FIXTURES", "WAIT", "GatewayProcess", "free_port", "send_lines",
           "runtime_dir_for", "rewrite_config", "shipped_config"]


def free_port() -> int:
    """A TCP port nobody listens on now (bind port 0, read what the kernel picked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def wait_ready(self, timeout: float = WAIT) -> "GatewayProcess":
        self.wait_for_log(READY, timeout=timeout)
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
