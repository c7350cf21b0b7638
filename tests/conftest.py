"""Shared fixtures: the daemon as a subprocess, a test emoncms server, TCP helpers."""

import hashlib
import os
import shutil
import tempfile
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.proclog import WAIT, ProcessLog

ROOT = Path(__file__).resolve().parent.parent
DAEMON = ROOT / "oemgateway.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def shipped_config() -> str:
    """The shipped ``oemgateway.conf`` as committed, never the copy in the checkout that its
    user may have edited (an API key filled in, other listeners). Outside a git checkout (an
    unpacked release), the file itself."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "show", "HEAD:oemgateway.conf"], capture_output=True,
                              text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return (ROOT / "oemgateway.conf").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_lines(port: int, data: bytes, host: str = "127.0.0.1") -> None:
    """Connect, send ``data``, close: what ``printf ... | nc host port`` does."""
    with socket.create_connection((host, port), timeout=WAIT) as s:
        s.sendall(data)


def listener_config(emoncms, listeners: str, extra: str = "", gateway: str = "clock = trusted") -> str:
    """A config text: DEBUG log, the given ``[listeners]`` sections, one emoncms buffer that
    sends to the test emoncms at once; ``extra`` goes after the buffer (more keys, [nodes])."""
    from tests.emoncms_server import WRITE_KEY
    return f"""
    [gateway]
    loglevel = DEBUG
    {gateway}
    [listeners]
    {listeners}
    [buffers]
    [[emoncms]]
    type = emoncms
    url = {emoncms.url}
    apikey = {WRITE_KEY}
    retry_max = 0.2
    {extra}
    """


def socket_emoncms_config(port, url, gateway="", listener="", buffer="", apikey=None) -> str:
    """The common end-to-end setup: DEBUG log, a socket listener ``[[tcp]]`` on ``port``, an
    emoncms buffer sending to ``url`` that retries quickly. ``gateway``, ``listener`` and
    ``buffer`` are extra lines for those sections."""
    from tests.emoncms_server import WRITE_KEY
    return f"""
    [gateway]
    loglevel = DEBUG
    {gateway}
    [listeners]
    [[tcp]]
    type = socket
    port = {port}
    {listener}
    [buffers]
    [[emoncms]]
    type = emoncms
    url = {url}
    apikey = {apikey or WRITE_KEY}
    retry_max = 0.2
    {buffer}
    """


def socket_buffer_config(port, name, buffer_type, settings: dict, nodes: str = "") -> str:
    """A socket listener ``[[tcp]]`` on ``port`` feeding one buffer ``[[name]]`` of
    ``buffer_type`` with ``settings``; DEBUG log, trusted clock, config checked every 0.2 s."""
    lines = "\n".join(f"    {key} = {value}" for key, value in settings.items())
    return f"""
    [gateway]
    loglevel = DEBUG
    clock = trusted
    config_check_interval = 0.2
    [listeners]
    [[tcp]]
    type = socket
    port = {port}
    [buffers]
    [[{name}]]
    type = {buffer_type}
{lines}
    {nodes}
    """


def values_by_node(rows) -> dict:
    """The test emoncms' rows as ``{node: {input name: value}}`` (the last value of each)."""
    out = {}
    for row in rows:
        out.setdefault(row.node, {})[row.name] = row.value
    return out


def runtime_dir_for(folder: Path) -> str:
    """A tmpfs folder belonging to a test folder (removed by the ``gateway_factory`` fixture)."""
    return os.path.join(TMPFS, "oemgateway-test-" + hashlib.sha1(str(folder).encode()).hexdigest()[:16])


class GatewayProcess:
    """``oemgateway.py`` running as a subprocess, the way the service runs it.

    Its log (stderr) is read by a thread into a list guarded by a Condition, so tests wait
    for a log line instead of sleeping.
    """

    def __init__(self, config_path: Path, extra_args=(), env=None):
        self.config_path = Path(config_path)
        self.output = ProcessLog("the gateway")
        folder = self.config_path.parent
        # The spool's folders, as systemd's RuntimeDirectory=/StateDirectory= would give them:
        # the hot tier on a tmpfs, one per test folder (a restarted daemon finds its own again).
        self.env = dict(os.environ, RUNTIME_DIRECTORY=runtime_dir_for(folder),
                        STATE_DIRECTORY=str(folder / "state"), **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(DAEMON), "--config-file", str(self.config_path), *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(folder), env=self.env,
            text=True, encoding="utf-8", errors="replace")
        self.output.follow(self.proc)

    @property
    def log(self) -> str:
        return self.output.text

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = WAIT) -> str:
        """Block until ``count`` log lines match the regex ``pattern``; return the last match."""
        return self.output.wait_for(pattern, count, timeout)

    def wait_ready(self) -> "GatewayProcess":
        self.wait_for_log(r"INFO oemgateway: ready")
        return self

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
            self.proc.kill()
            self.proc.wait()
        self.output.join()


@pytest.fixture
def emoncms():
    from tests.emoncms_server import FakeEmoncms
    server = FakeEmoncms().start()
    yield server
    server.stop()


@pytest.fixture
def gateway_factory(tmp_path):
    """``start(config_text)`` writes the config to a temp folder and runs the daemon on it."""
    started = []

    def start(config_text: str, name: str = "oemgateway.conf", wait_ready=True, extra_args=(), env=None):
        path = tmp_path / name
        path.write_text(textwrap.dedent(config_text))
        gateway = GatewayProcess(path, extra_args, env)
        started.append(gateway)
        if wait_ready:
            gateway.wait_ready()
        return gateway

    yield start
    for gateway in started:
        gateway.kill()
    shutil.rmtree(runtime_dir_for(tmp_path), ignore_errors=True)


@pytest.fixture
def running():
    """The event loop running on a thread, for a listener tested in this process."""
    from tests.loop_thread import LoopThread
    loop = LoopThread()
    yield loop
    loop.stop()


def rewrite_config(path: Path, text: str) -> None:
    """Replace a config file atomically, as editors do, with a new mtime."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(text))
    os.replace(tmp, path)
