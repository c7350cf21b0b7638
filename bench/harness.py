"""The daemon under test as a subprocess, its config, and the load generator's TCP helpers.

The daemon runs in the tests' harness (``tests.support.daemon``, free of pytest): its log is
read by a thread into a bounded list guarded by a Condition, so readiness is awaited, not
polled. Resource figures come from psutil and, where finer resolution is needed, from
``/proc/PID/task/*/schedstat`` (nanoseconds on CPU per thread).
"""

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import psutil

from tests.support.daemon import ROOT, GatewayProcess, free_port  # noqa: F401 (free_port: the bench's)

DAEMON = ROOT / "oemgateway.py"  # the daemon under test; see set_gateway_dir()


def set_gateway_dir(folder) -> Path:
    """Benchmark the daemon in ``folder`` (e.g. a ``git archive`` of a commit) instead of this
    work tree; returns the daemon script's path."""
    global DAEMON
    script = Path(folder).resolve() / "oemgateway.py"
    if not script.is_file():
        raise FileNotFoundError(f"no oemgateway.py in {folder}")
    DAEMON = script
    return script


class DaemonError(RuntimeError):
    """The daemon did not start; ``log`` holds its log tail."""

    def __init__(self, message: str, log: str):
        super().__init__(message)
        self.log = log


def write_config(folder: Path, listen_port: int, server_url: str, apikey: str,
                 buffer_settings: Optional[Dict[str, object]] = None,
                 extra_listeners: str = "", with_socket: bool = True,
                 name: str = "oemgateway.conf") -> Path:
    """The bench's config: one socket listener, one emoncms buffer, INFO logging (for 'ready')."""
    settings = {"retry_max": 1, "max_items": 200000, "batch_size": 500}
    settings.update(buffer_settings or {})
    buffer_lines = "\n".join(f"        {key} = {value}" for key, value in settings.items())
    socket_section = textwrap.dedent(f"""\
        [[tcp]]
            type = socket
            bind = 127.0.0.1
            port = {listen_port}
        """) if with_socket else ""
    text = (
        "[gateway]\n"
        "    loglevel = INFO\n"
        "[listeners]\n"
        + textwrap.indent(socket_section, "    ")
        + extra_listeners
        + "[buffers]\n"
        "    [[emoncms]]\n"
        "        type = emoncms\n"
        f"        url = {server_url}\n"
        f"        apikey = {apikey}\n"
        + buffer_lines + "\n")
    path = Path(folder) / name
    path.write_text(text)
    return path


def check_config(path: Path, timeout: float = 30) -> Tuple[int, str]:
    """``oemgateway.py --check``: (exit code, output)."""
    try:
        done = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(path), "--check"],
                              cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"--check did not finish within {timeout:g} s"
    return done.returncode, (done.stdout + done.stderr).strip()


class Daemon(GatewayProcess):
    """The tests' daemon harness (``tests.support.daemon.GatewayProcess``) running the daemon
    under test (see :func:`set_gateway_dir`), keeping only the last lines of its log, with the
    process's resource figures.

    ``runtime_dir``/``state_dir``: the spool's folders, as systemd's RuntimeDirectory=/
    StateDirectory= give them to the service; private to this run, so no run sees another's
    readings (nor the system's). ``None`` leaves the environment's.
    """

    KEEP_LINES = 2000

    def __init__(self, config_path: Path, runtime_dir: Optional[str] = None,
                 state_dir: Optional[str] = None):
        super().__init__(config_path, daemon=DAEMON, runtime_dir=runtime_dir, state_dir=state_dir,
                         keep_lines=self.KEEP_LINES)
        self.runtime_dir = runtime_dir
        self.ps = psutil.Process(self.proc.pid)

    def log_tail(self, n: int = 20) -> str:
        return self.output.tail(n)

    def wait_ready(self, timeout: float = 30) -> "Daemon":
        try:
            return super().wait_ready(timeout)
        except AssertionError:
            state = "exited with %s" % self.proc.poll() if self.proc.poll() is not None \
                else f"not ready within {timeout:g} s"
            tail = self.log_tail(40)
            last = tail.splitlines()[-1].strip() if tail else "(no log)"
            raise DaemonError(f"daemon {state} before 'ready': {last}", tail) from None

    # -- resources -------------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """user + system CPU seconds of the whole process (psutil; clock-tick resolution)."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def cpu_ns_precise(self) -> Optional[int]:
        """Nanoseconds on CPU summed over the live threads (/proc/PID/task/*/schedstat), or None."""
        total = 0
        try:
            tasks = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return None
        for tid in tasks:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                return None
        return total

    def thread_count(self) -> int:
        return self.ps.num_threads()

    def wakeups(self) -> Optional[int]:
        """Voluntary context switches summed over the live threads (each is a sleep/wake)."""
        total = 0
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            total += int(line.split()[1])
        except (OSError, ValueError):
            return None
        return total

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2 ** 20

    def peak_rss_mb(self) -> Optional[float]:
        """VmHWM: the highest RSS the process had."""
        return peak_rss_mb(self.pid)

    def spool_ram_mb(self) -> Optional[float]:
        """Memory the spool's hot tier takes on its tmpfs (outside the RSS), or None."""
        return None if not self.runtime_dir else dir_bytes(self.runtime_dir) / 2 ** 20


def tmpfs_folder(prefix: str) -> str:
    """A new folder on a tmpfs (/dev/shm) when there is one, else in the temp folder."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def dir_bytes(folder: str) -> int:
    """Bytes allocated to the files under ``folder``."""
    total = 0
    for path, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(path, name)).st_blocks * 512
            except OSError:
                pass
    return total


# -- load generation --------------------------------------------------------------------------
def frame_line(node, seq: int, per_frame: int) -> bytes:
    """Frame ``seq`` of ``node``: values ``seq*per_frame + j`` (j = 0..per_frame-1), so every
    value a node ever sends is distinct and names its frame and position."""
    base = seq * per_frame
    return (f"{node} " + " ".join(map(str, range(base, base + per_frame))) + "\n").encode()


def frames_payload(frames: int, nodes: List[int], per_frame: int) -> Tuple[bytes, Dict[str, int]]:
    """``frames`` frames round-robin over ``nodes``; returns (bytes, frames per node)."""
    counts = {str(node): 0 for node in nodes}
    parts = []
    n = len(nodes)
    for i in range(frames):
        node = nodes[i % n]
        parts.append(frame_line(node, i // n, per_frame))
        counts[str(node)] += 1
    return b"".join(parts), counts


def connect(port: int, timeout: float = 60.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def push_all(port: int, payload: bytes, timeout: float = 120.0) -> Tuple[float, float, float]:
    """Send ``payload`` on one connection as fast as the daemon reads it, then half-close and
    wait for the daemon to close its side.

    The daemon closes a connection only after it has read (and so parsed and queued) every byte
    before the end of stream, so the third time is when the daemon has accepted everything.
    Returns monotonic (first byte sent, last byte handed to the kernel, daemon accepted all).
    """
    sock = connect(port, timeout)
    try:
        view = memoryview(payload)
        chunk = 1 << 16
        t0 = time.monotonic()
        for start in range(0, len(view), chunk):
            sock.sendall(view[start:start + chunk])
        t_sent = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
        t_accepted = time.monotonic()
    finally:
        sock.close()
    return t0, t_sent, t_accepted


def paced_send(sock: socket.socket, lines: Iterable[bytes], rate: float,
               start: Optional[float] = None, stop_event: Optional[threading.Event] = None) -> List[float]:
    """Send one line every 1/rate s on deadlines from time.monotonic(); returns each send time.

    Sleeping until the next deadline (not after the previous send) keeps the rate exact when a
    send is late; a late sender catches up without drifting.
    """
    start = time.monotonic() if start is None else start
    sent = []
    for i, line in enumerate(lines):
        if stop_event is not None and stop_event.is_set():
            break
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        sock.sendall(line)
        sent.append(now)
    return sent


def percentile(values: List[float], q: float) -> Optional[float]:
    """Linear-interpolated percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def peak_rss_mb(pid: int) -> Optional[float]:
    """VmHWM of process ``pid``: the highest RSS it had, in MB (None when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None
