"""The fake emoncms server as the benchmarks use it: rows counted, checked and timestamped.

``tests.support.emoncms_server.FakeEmoncms`` stores one Row per input value written. The benchmarks
also need *when* each row was stored (latency, end-to-end rates), so :class:`TimedFake` wraps
the fake's input store and appends ``time.monotonic()`` to ``arrivals`` for every row, under
the fake's own Condition; waiting for rows is a ``Condition.wait_for`` on that Condition (no
polling). ``time.monotonic()`` is CLOCK_MONOTONIC, shared by every process of the machine, so
arrival times compare directly with send times taken in the bench process.

Two ways to run it, with the same methods:

* :class:`ProcServer` (the default): the fake runs in its own process (``python -m
  bench.server --serve``), driven over a pipe with one JSON line per command. Counting and
  checking the rows happens in that process, so nothing large crosses the pipe, and neither the
  fake's request parsing nor the bench's load generator competes for the other's GIL.
* :class:`InProcServer`: the fake runs in threads of the bench process (``--server inproc``).

Standard library only, plus the project's own test server.
"""

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.emoncms_server import WRITE_KEY, FakeEmoncms  # noqa: E402

__all__ = ["WRITE_KEY", "TimedFake", "InProcServer", "ProcServer", "make_server"]


class TimedFake:
    """A started FakeEmoncms whose stored rows also get an arrival time (monotonic seconds),
    taken by the fake's ``on_stored`` hook as each row is stored."""

    def __init__(self):
        self.cond = threading.Condition()
        self._rows: list = []
        self.arrivals: List[float] = []
        self.fake = FakeEmoncms(on_stored=self._stored)
        self.fake.start()

    def _stored(self, rows) -> None:
        now = time.monotonic()
        with self.cond:
            self._rows.extend(rows)
            self.arrivals.extend([now] * len(rows))
            self.cond.notify_all()

    # -- the operations both front ends offer ------------------------------------------------
    def info(self) -> dict:
        return {"url": self.fake.url, "port": self.fake.port, "pid": os.getpid()}

    def count(self) -> int:
        with self.cond:
            return len(self.arrivals)

    def wait_rows(self, n: int, timeout: float) -> dict:
        """Block (Condition wait) until ``n`` rows are stored or ``timeout`` passes."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.arrivals) >= n, timeout)
            count = len(self.arrivals)
            last = self.arrivals[n - 1] if ok and n > 0 else (self.arrivals[-1] if count else None)
            return {"ok": bool(ok), "count": count, "last_arrival": last}

    def set_mode(self, mode: str) -> float:
        """Change the fake's mode; returns time.monotonic() once the change is in effect."""
        self.fake.set_mode(mode)
        return time.monotonic()

    def reset(self) -> None:
        self.fake.reset()
        with self.cond:
            self._rows.clear()
            self.arrivals.clear()

    def arrivals_of(self, name: str = "1") -> list:
        """``[node, value, arrival]`` of every row of input ``name``, in storage order."""
        with self.cond:
            return [[r.node, r.value, t] for r, t in zip(self._rows, self.arrivals) if r.name == name]

    def verify(self, expected: Dict[str, int], per_frame: int) -> dict:
        """Check rows against frames made by :func:`bench.run.frame_values`.

        ``expected`` maps node -> frames sent to it; frame ``seq`` of a node carries the values
        ``seq*per_frame + j`` as inputs "1".."per_frame". Counts values missing (lost), stored
        more than once (doubled), stored under the wrong input name or unknown (unexpected),
        and frames of a node stored out of order.
        """
        with self.cond:
            rows = list(self._rows)
        by_node = collections.defaultdict(list)
        for row in rows:
            by_node[row.node].append(row)
        lost = doubled = unexpected = out_of_order = 0
        for node, frames in expected.items():
            size = frames * per_frame
            seen = bytearray(size)
            previous = -1
            for row in by_node.pop(str(node), ()):
                value = row.value
                index = int(value) if value == value and abs(value) < 2 ** 53 else -1
                if index != value or not 0 <= index < size or row.name != str(index % per_frame + 1):
                    unexpected += 1
                    continue
                if seen[index]:
                    doubled += 1
                else:
                    seen[index] = 1
                seq = index // per_frame
                if seq < previous:
                    out_of_order += 1
                previous = seq
            lost += size - seen.count(1)
        unexpected += sum(len(extra) for extra in by_node.values())
        return {"rows": len(rows), "expected_rows": sum(expected.values()) * per_frame,
                "lost": lost, "doubled": doubled, "unexpected": unexpected,
                "out_of_order": out_of_order}

    def stop(self) -> None:
        self.fake.stop()


# -- front ends ------------------------------------------------------------------------------
class InProcServer:
    """The fake in threads of this process."""

    kind = "inproc"

    def __init__(self):
        self._fake = TimedFake()
        info = self._fake.info()
        self.url, self.port, self.pid = info["url"], info["port"], info["pid"]

    def count(self) -> int:
        return self._fake.count()

    def wait_rows(self, n: int, timeout: float) -> dict:
        return self._fake.wait_rows(n, timeout)

    def set_mode(self, mode: str) -> float:
        return self._fake.set_mode(mode)

    def reset(self) -> None:
        self._fake.reset()

    def arrivals_of(self, name: str = "1") -> list:
        return self._fake.arrivals_of(name)

    def verify(self, expected: Dict[str, int], per_frame: int) -> dict:
        return self._fake.verify(expected, per_frame)

    def stop(self) -> None:
        self._fake.stop()

    def kill(self) -> None:
        self._fake.stop()


class ServerError(RuntimeError):
    pass


class ProcServer:
    """The fake in a child process, one JSON command line in, one JSON answer line out."""

    kind = "proc"
    START_TIMEOUT = 20.0
    SLACK = 15.0  # seconds allowed on top of a command's own timeout before giving up on the child

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.server", "--serve"], cwd=str(ROOT),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, bufsize=0)
        self._buffer = b""
        try:
            info = self._read(self.START_TIMEOUT)
        except Exception:
            self.kill()
            raise
        self.url, self.port, self.pid = info["url"], info["port"], info["pid"]

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerError(f"fake emoncms process did not answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise ServerError("fake emoncms process ended (exit code %s)" % self.proc.poll())
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(line)
        if "error" in answer:
            raise ServerError("fake emoncms process: " + answer["error"])
        return answer

    def _call(self, op: str, _wait: float = 0.0, **args):
        if self.proc.poll() is not None:
            raise ServerError("fake emoncms process is not running")
        try:
            self.proc.stdin.write((json.dumps(dict(args, op=op)) + "\n").encode())
        except (BrokenPipeError, ValueError) as exc:
            raise ServerError(f"fake emoncms process: {exc}") from None
        return self._read(_wait + self.SLACK)["result"]

    def count(self) -> int:
        return self._call("count")

    def wait_rows(self, n: int, timeout: float) -> dict:
        return self._call("wait_rows", timeout, n=n, timeout=timeout)

    def set_mode(self, mode: str) -> float:
        return self._call("set_mode", mode=mode)

    def reset(self) -> None:
        self._call("reset")

    def arrivals_of(self, name: str = "1") -> list:
        return self._call("arrivals_of", name=name)

    def verify(self, expected: Dict[str, int], per_frame: int) -> dict:
        return self._call("verify", 60, expected=expected, per_frame=per_frame)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call("stop")
            except ServerError:
                pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def make_server(kind: str):
    return ProcServer() if kind == "proc" else InProcServer()


# -- the child process ---------------------------------------------------------------------------
def _quiet_disconnects() -> None:
    """Don't print a traceback when a client vanishes mid-request: the bench SIGKILLs the daemon
    at the end of every run, with its keep-alive connection open. Other errors still print."""
    import socketserver
    original = socketserver.BaseServer.handle_error

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        original(self, request, client_address)

    socketserver.BaseServer.handle_error = handle_error


def serve() -> int:
    """Run a TimedFake, answer commands from stdin until EOF or "stop"."""
    _quiet_disconnects()  # this process is the bench's own: patching socketserver here is contained
    fake = TimedFake()
    out = sys.stdout.buffer

    def answer(obj) -> None:
        out.write(json.dumps(obj).encode() + b"\n")
        out.flush()

    answer(fake.info())
    try:
        for line in sys.stdin.buffer:
            try:
                command = json.loads(line)
                op = command.pop("op")
                if op == "stop":
                    answer({"result": None})
                    break
                if op not in ("count", "wait_rows", "set_mode", "reset", "arrivals_of", "verify"):
                    raise ValueError(f"unknown op {op!r}")
                answer({"result": getattr(fake, op)(**command)})
            except Exception as exc:  # report to the bench, keep serving
                answer({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        fake.stop()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The benchmarks' fake emoncms process (internal).")
    parser.add_argument("--serve", action="store_true", help="serve commands on stdin/stdout")
    args = parser.parse_args(argv)
    if not args.serve:
        parser.error("run by bench.run; use --serve")
    return serve()


if __name__ == "__main__":
    sys.exit(main())
