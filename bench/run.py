"""OEM Gateway benchmarks: the real daemon as a subprocess against the fake emoncms.

    python -m bench.run [--quick] [--runs N] [--json PATH] [--only NAME,...] [--server proc|inproc]

Every scenario starts a fresh fake emoncms and a fresh daemon, repeats ``--runs`` times (default
3; ``--quick``: 1 run at smaller sizes, under a minute in all), and reports the median and the
spread (min-max) of each figure beside the project's targets. Results go to a table on stdout
and to JSON (default bench/results/latest.json) with the machine's description. Exit code 1 when
a scenario lost, doubled or garbled data or could not run; a missed target is reported, not an
error. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import psutil

from bench import harness
from bench.harness import (ROOT, Daemon, DaemonError, check_config, connect, frame_line, frames_payload,
                           free_port, paced_send, percentile, push_all, tmpfs_folder,
                           write_config)
from bench.server import WRITE_KEY, make_server
from bench.side_by_side import measure_one

NODES = list(range(1, 11))  # 10 nodes
PER_FRAME = 8               # values per frame (an emonTx-like frame), everywhere but where stated
WARMUP_NODE = 200           # a frame that opens the daemon's connection to the server; not counted
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"


class Skip(Exception):
    """The scenario cannot run here; the message says why."""


class Fail(Exception):
    """The scenario ran but its result is wrong (lost data, a dead daemon...)."""


# -- the rig: one fake emoncms + one daemon, always torn down --------------------------------------
class Rig:
    """Starts the fake server and the daemon, arms a watchdog, and kills both on exit.

    The watchdog kills the daemon and the server at ``timeout``: whatever the scenario was
    blocked on (a socket, a server wait) then fails, so no scenario can hang the bench.
    """

    def __init__(self, server_kind: str, timeout: float, buffer_settings: Optional[dict] = None,
                 extra_listeners: Optional[Callable[[], str]] = None, with_socket: bool = True):
        self.server_kind = server_kind
        self.timeout = timeout
        self.buffer_settings = buffer_settings
        self.extra_listeners = extra_listeners
        self.with_socket = with_socket
        self.server = None
        self.daemon: Optional[Daemon] = None
        self.folder: Optional[str] = None
        self.runtime_dir: Optional[str] = None
        self.expired = False
        self._watchdog: Optional[threading.Timer] = None

    def __enter__(self) -> "Rig":
        try:
            self._watchdog = threading.Timer(self.timeout, self._expire)
            self._watchdog.daemon = True
            self._watchdog.start()
            self.server = make_server(self.server_kind)
            self.folder = tempfile.mkdtemp(prefix="oemgw-bench-")
            self.port = free_port()
            self.config = write_config(
                Path(self.folder), self.port, self.server.url, WRITE_KEY, self.buffer_settings,
                extra_listeners=self.extra_listeners() if self.extra_listeners else "",
                with_socket=self.with_socket)
            self.runtime_dir = tmpfs_folder("oemgw-bench-run-")
            self.daemon = Daemon(self.config, self.runtime_dir, str(Path(self.folder) / "state"))
            self.daemon.wait_ready(30)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _expire(self) -> None:
        self.expired = True
        self._kill_all()

    def _kill_all(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()
        if self.server is not None:
            self.server.kill()

    def check(self) -> None:
        """Raise Fail if the watchdog fired or the daemon died."""
        if self.expired:
            raise Fail(f"scenario timed out after {self.timeout:g} s (watchdog)")
        if self.daemon is not None and not self.daemon.alive():
            raise Fail(f"daemon exited with {self.daemon.proc.poll()}; log tail:\n"
                       + self.daemon.log_tail())

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.daemon is not None:
            self.daemon.kill()
        if self.server is not None:
            try:
                self.server.stop()
            except Exception:
                self.server.kill()
        for folder in (self.folder, self.runtime_dir):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        if self.expired and exc_type is not None and not issubclass(exc_type, (Fail, KeyboardInterrupt)):
            # whatever broke when the watchdog killed everything, the cause is the timeout
            raise Fail(f"scenario timed out after {self.timeout:g} s (watchdog); then: {exc!r}") from exc


def server_cpu(server) -> Callable[[], float]:
    """CPU seconds of the process the fake server runs in (the bench itself when in-process)."""
    proc = psutil.Process(server.pid)

    def read() -> float:
        t = proc.cpu_times()
        return t.user + t.system
    return read


def check_delivery(verdict: dict) -> dict:
    """The correctness figures of a verify() answer; raises Fail when anything is off."""
    checks = {key: verdict[key] for key in ("rows", "expected_rows", "lost", "doubled",
                                            "unexpected", "out_of_order")}
    bad = {k: v for k, v in checks.items() if k in ("lost", "doubled", "unexpected") and v}
    if bad or checks["rows"] != checks["expected_rows"]:
        raise Fail("delivery check failed: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    return checks


def warm_up(rig: Rig, sock) -> None:
    """One frame end to end, so the daemon's HTTP connection is open; then forget its rows."""
    sock.sendall(frame_line(WARMUP_NODE, 0, PER_FRAME))
    answer = rig.server.wait_rows(PER_FRAME, 15)
    if not answer["ok"]:
        rig.check()
        raise Fail("the warm-up frame never reached the server")
    rig.server.reset()


# -- scenarios ---------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    title: str
    run: Callable[["Context"], dict]
    size: Callable[[bool], dict]
    timeout: Callable[[bool], float]


@dataclass
class Context:
    quick: bool
    server_kind: str
    size: dict
    timeout: float
    notes: List[str] = field(default_factory=list)


def run_burst(ctx: Context) -> dict:
    frames = ctx.size["frames"]
    payload, counts = frames_payload(frames, NODES, PER_FRAME)
    with Rig(ctx.server_kind, ctx.timeout) as rig:
        srv_cpu = server_cpu(rig.server)
        c0, s0 = rig.daemon.cpu_seconds(), srv_cpu()
        t0, t_sent, t_accepted = push_all(rig.port, payload, timeout=ctx.timeout)
        rig.check()
        answer = rig.server.wait_rows(frames * PER_FRAME, max(1.0, ctx.timeout - 30))
        t_end = time.monotonic()
        c1, s1 = rig.daemon.cpu_seconds(), srv_cpu()
        rig.check()
        verdict = rig.server.verify(counts, PER_FRAME)
        checks = check_delivery(verdict)
        if not answer["ok"]:
            raise Fail(f"only {answer['count']} of {frames * PER_FRAME} rows arrived")
        elapsed = answer["last_arrival"] - t0
        wall = t_end - t0
        return {
            "metrics": {
                "frames_per_s": frames / elapsed,
                "rows_per_s": frames * PER_FRAME / elapsed,
                "ingest_frames_per_s": frames / (t_accepted - t0),
                "elapsed_s": elapsed,
                "daemon_cpu_pct": (c1 - c0) / wall * 100,
                "server_cpu_pct": (s1 - s0) / wall * 100,
                "peak_rss_mb": rig.daemon.peak_rss_mb(),
            },
            "checks": checks,
        }


def paced_frames(count: int) -> Tuple[List[bytes], Dict[str, int]]:
    """``count`` frame lines going round the nodes (frame ``i``: node ``i mod n``, its
    ``i div n``-th frame) and how many frames each node gets."""
    lines = [frame_line(NODES[i % len(NODES)], i // len(NODES), PER_FRAME) for i in range(count)]
    counts = {str(node): len(range(i, count, len(NODES))) for i, node in enumerate(NODES)}
    return lines, counts


def paced_latencies(rig: Rig, answer: dict, counts: Dict[str, int], sent: List[float]) -> Tuple[dict, List[float]]:
    """The delivery checks of a paced run and each frame's latency in ms (the arrival of its
    first input minus its send time); Fail when rows did not all arrive."""
    checks = check_delivery(rig.server.verify(counts, PER_FRAME))
    if not answer["ok"]:
        raise Fail(f"only {answer['count']} of {len(sent) * PER_FRAME} rows arrived")
    arrived = {(node, int(value) // PER_FRAME): t for node, value, t in rig.server.arrivals_of("1")}
    latencies = [(arrived[(str(NODES[i % len(NODES)]), i // len(NODES))] - t) * 1000.0
                 for i, t in enumerate(sent)]
    return checks, latencies


def run_latency(ctx: Context) -> dict:
    rate, duration = 10.0, ctx.size["seconds"]
    count = int(rate * duration)
    lines, counts = paced_frames(count)
    with Rig(ctx.server_kind, ctx.timeout) as rig, connect(rig.port) as sock:
        warm_up(rig, sock)
        sent = paced_send(sock, lines, rate, start=time.monotonic() + 0.05)
        rig.check()
        answer = rig.server.wait_rows(count * PER_FRAME, 15)
        rig.check()
        checks, latencies = paced_latencies(rig, answer, counts, sent)
        return {
            "metrics": {
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "max_ms": max(latencies),
                "frames": len(latencies),
            },
            "checks": checks,
        }


def run_idle_cpu(ctx: Context) -> dict:
    duration, settle = ctx.size["seconds"], ctx.size["settle_s"]
    with Rig(ctx.server_kind, ctx.timeout) as rig:
        d = rig.daemon
        time.sleep(settle)
        rig.check()
        c0, n0, w0, t0 = d.cpu_seconds(), d.cpu_ns_precise(), d.wakeups(), time.monotonic()
        time.sleep(duration)
        c1, n1, w1, t1 = d.cpu_seconds(), d.cpu_ns_precise(), d.wakeups(), time.monotonic()
        rig.check()
        wall = t1 - t0
        metrics = {
            "cpu_s": c1 - c0,
            "cpu_pct_core_psutil": (c1 - c0) / wall * 100,
            "cpu_pct_core": None,
            "wakeups_per_s": None if w0 is None or w1 is None else (w1 - w0) / wall,
            "threads": d.thread_count(),
            "rss_mb": d.rss_mb(),
        }
        if n0 is not None and n1 is not None and n1 >= n0:
            metrics["cpu_pct_core"] = (n1 - n0) / 1e9 / wall * 100
        else:
            metrics["cpu_pct_core"] = metrics["cpu_pct_core_psutil"]
            ctx.notes.append("schedstat unavailable: cpu_pct_core from psutil (10 ms ticks)")
        return {"metrics": metrics, "checks": {}}


def run_steady(ctx: Context) -> dict:
    rate, duration = 100.0, ctx.size["seconds"]
    count = int(rate * duration)
    lines, counts = paced_frames(count)
    with Rig(ctx.server_kind, ctx.timeout) as rig, connect(rig.port) as sock:
        d = rig.daemon
        warm_up(rig, sock)
        c0, n0, t0 = d.cpu_seconds(), d.cpu_ns_precise(), time.monotonic()
        sent = paced_send(sock, lines, rate, start=t0)
        answer = rig.server.wait_rows(count * PER_FRAME, 30)
        c1, n1, t1 = d.cpu_seconds(), d.cpu_ns_precise(), time.monotonic()
        rss = d.rss_mb()
        rig.check()
        checks, latencies = paced_latencies(rig, answer, counts, sent)
        wall = t1 - t0
        cpu = (n1 - n0) / 1e9 if n0 is not None and n1 is not None and n1 >= n0 else c1 - c0
        return {
            "metrics": {
                "cpu_pct_core": cpu / wall * 100,
                "rss_mb": rss,
                "peak_rss_mb": d.peak_rss_mb(),
                "spool_tmpfs_mb": d.spool_ram_mb(),
                "achieved_rate": (count - 1) / (sent[-1] - sent[0]) if count > 1 else None,
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
            },
            "checks": checks,
        }


def outage_then_recovery(ctx: Context, rig: Rig, payload: bytes, counts: Dict[str, int], per_frame: int,
                         settle_s: float, while_down: Callable[[], dict]):
    """The server refuses connections while ``payload`` arrives and for ``settle_s`` after;
    ``while_down()`` then takes its figures; then the server is back. Returns those figures,
    the seconds from "back up" to the last row stored, that moment, and the delivery checks."""
    rig.server.set_mode("refuse")
    push_all(rig.port, payload, timeout=ctx.timeout)
    time.sleep(settle_s)
    rig.check()
    figures = while_down()
    if rig.server.count():
        raise Fail("rows arrived while the server was refusing connections")
    t_up = rig.server.set_mode("ok")
    rows = sum(counts.values()) * per_frame
    answer = rig.server.wait_rows(rows, max(1.0, ctx.timeout - 30))
    rig.check()
    checks = check_delivery(rig.server.verify(counts, per_frame))
    if not answer["ok"]:
        raise Fail(f"only {answer['count']} of {rows} rows arrived")
    return figures, answer["last_arrival"] - t_up, t_up, checks


def run_catchup(ctx: Context) -> dict:
    frames = ctx.size["frames"]
    payload, counts = frames_payload(frames, NODES, PER_FRAME)
    with Rig(ctx.server_kind, ctx.timeout) as rig:
        # the sender sits in its retry backoff for outage_after_s, as in an outage
        (queued_rss, spool), catchup, t_up, checks = outage_then_recovery(
            ctx, rig, payload, counts, PER_FRAME, ctx.size["outage_after_s"],
            lambda: (rig.daemon.rss_mb(), rig.daemon.spool_ram_mb()))
        first = rig.server.wait_rows(1, 1)["last_arrival"]
        return {
            "metrics": {
                "catchup_s": catchup,
                "first_row_after_s": first - t_up,
                "drain_frames_per_s": frames / catchup,
                "rss_queued_mb": queued_rss,
                "spool_tmpfs_mb": spool,
            },
            "checks": checks,
        }


def run_memory(ctx: Context) -> dict:
    frames = ctx.size["frames"]
    payload, _ = frames_payload(frames, NODES, PER_FRAME)
    with Rig(ctx.server_kind, ctx.timeout) as rig:
        d = rig.daemon
        rig.server.set_mode("refuse")
        time.sleep(ctx.size["settle_s"])
        rss_idle, spool_idle = d.rss_mb(), d.spool_ram_mb()
        push_all(rig.port, payload, timeout=ctx.timeout)
        time.sleep(ctx.size["settle_s"])
        rig.check()
        rss_queued = d.rss_mb()
        spool = d.spool_ram_mb()
        if rig.server.count():
            raise Fail("rows arrived while the server was refusing connections")
        return {
            "metrics": {
                "rss_idle_mb": rss_idle,
                "rss_queued_mb": rss_queued,
                "peak_rss_mb": d.peak_rss_mb(),
                "spool_tmpfs_mb": spool,
                "ram_total_mb": rss_queued + (spool or 0.0),
                "bytes_per_frame": ((rss_queued + (spool or 0.0)) - (rss_idle + (spool_idle or 0.0)))
                                   * 2 ** 20 / frames,
            },
            "checks": {"queued_frames": frames},
        }


def run_backlog(ctx: Context) -> dict:
    """A very long outage: every reading queued (no ``max_items``), the spool's default bounds
    (16 MiB hot tier, the rest saved to disk); RSS with all of them queued, then the drain."""
    frames, per_frame = ctx.size["frames"], ctx.size["values"]
    payload, counts = frames_payload(frames, NODES, per_frame)
    with Rig(ctx.server_kind, ctx.timeout, buffer_settings={"max_items": 0}) as rig:
        d = rig.daemon

        def while_down() -> dict:   # once the spool has saved what the hot tier cannot hold
            return {"rss_queued_mb": d.rss_mb(), "peak_rss_mb": d.peak_rss_mb(),
                    "spool_tmpfs_mb": d.spool_ram_mb(),
                    "spool_disk_mb": harness.dir_bytes(str(Path(rig.folder) / "state")) / 2 ** 20}

        figures, drain, _, checks = outage_then_recovery(ctx, rig, payload, counts, per_frame,
                                                         ctx.size["settle_s"], while_down)
        return {
            "metrics": dict(figures, peak_rss_drain_mb=d.peak_rss_mb(), drain_s=drain,
                            drain_frames_per_s=frames / drain),
            "checks": checks,
        }


def run_serial(ctx: Context) -> dict:
    """An RFM2Pi listener reading a pseudo-terminal at full rate.

    The pty plays an RFM69Pi board (38400-baud framing, ``OK node byte byte ...`` lines without
    RSSI): node 10 has no ``[nodes]`` section, so its 16 bytes decode as 8 int16 values, 8 rows
    per frame. ``frames_per_s`` is end to end (written to the pty -> stored by the fake emoncms);
    ``read_frames_per_s`` is how fast the daemon drains the pty (the listener's decoding rate,
    bounded by the kernel's pty buffer). ``--check`` first: without the listener type it skips.
    """
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        slave_name = os.ttyname(slave)
        section = ("    [[rfm2pi]]\n"
                   "        type = rfm2pi\n"
                   f"        com_port = {slave_name}\n")
        folder = tempfile.mkdtemp(prefix="oemgw-bench-check-")
        try:
            path = write_config(Path(folder), free_port(), "http://127.0.0.1:9", WRITE_KEY,
                                extra_listeners=section, with_socket=False)
            code, output = check_config(path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if code != 0:
            first = next((line.strip() for line in output.splitlines() if "rfm2pi" in line.lower()),
                         output.splitlines()[-1] if output else "")
            first = first.split("type = rfm2pi: ", 1)[-1]  # drop the temp file's path
            raise Skip(f"no rfm2pi listener type (--check exit {code}: {first})")
        return _serial_measure(ctx, master, section)
    finally:
        os.close(master)
        os.close(slave)


def _serial_measure(ctx: Context, master: int, section: str) -> dict:
    frames = ctx.size["frames"]

    def line(seq: int) -> bytes:
        lo, hi = seq & 0xFF, (seq >> 8) & 0xFF
        return ("OK 10 %d %d" % (lo, hi) + " 0" * 14 + "\r\n").encode()

    with Rig(ctx.server_kind, ctx.timeout, extra_listeners=lambda: section, with_socket=False) as rig:
        os.set_blocking(master, False)
        deadline = time.monotonic() + ctx.timeout - 20

        def write_all(data: bytes) -> None:
            view = memoryview(data)
            while view:
                if time.monotonic() > deadline:
                    raise Fail("the pty was not read (listener stalled)")
                readable, writable, _ = select.select([master], [master], [], 1.0)
                if readable:
                    try:
                        os.read(master, 65536)  # anything the listener writes back (commands, echo)
                    except OSError:
                        pass
                if writable:
                    try:
                        view = view[os.write(master, view):]
                    except BlockingIOError:
                        pass

        # Calibrate: how many rows one RFM2Pi frame gives. The line end first, as a board's
        # output starts: bytes right after the port opens, before any line end, are taken
        # for the tail of a line sent before the gateway was listening, and dropped.
        write_all(b"\r\n" + line(0))
        first = rig.server.wait_rows(1, 15)
        if not first["ok"]:
            rig.check()
            raise Fail("no RFM2Pi frame reached the server")
        time.sleep(0.5)
        per_frame = rig.server.count()
        rig.server.reset()
        payload = b"".join(line(seq) for seq in range(1, frames + 1))
        c0 = rig.daemon.cpu_seconds()
        t0 = time.monotonic()
        write_all(payload)
        t_written = time.monotonic()
        answer = rig.server.wait_rows(frames * per_frame, max(1.0, deadline - time.monotonic()))
        rig.check()
        if not answer["ok"]:
            raise Fail(f"only {answer['count']} of {frames * per_frame} rows arrived")
        return {
            "metrics": {
                "frames_per_s": frames / (answer["last_arrival"] - t0),
                "read_frames_per_s": frames / (t_written - t0),
                "cpu_us_per_frame": (rig.daemon.cpu_seconds() - c0) / frames * 1e6,
                "rows_per_frame": per_frame,
            },
            "checks": {"rows": answer["count"]},
        }


def run_fake_ceiling(ctx: Context) -> dict:
    """Calibration: how fast the fake emoncms itself stores bulk rows (the daemon not involved).

    A single keep-alive client posts ``input/bulk`` batches of 500 eight-value frames, as the
    daemon does; burst and catch-up cannot exceed this rate.
    """
    import http.client
    batches, batch = ctx.size["batches"], 500
    bodies = []
    seq = 0
    for _ in range(batches):
        rows = []
        for _ in range(batch):
            node = NODES[seq % len(NODES)]
            base = (seq // len(NODES)) * PER_FRAME
            rows.append([1700000000, node, {str(j + 1): base + j for j in range(PER_FRAME)}])
            seq += 1
        data = json.dumps(rows, separators=(",", ":"))
        bodies.append(("data=" + _quote(data) + "&time=0").encode())
    server = make_server(ctx.server_kind)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=ctx.timeout)
        headers = {"Authorization": "Bearer " + WRITE_KEY,
                   "Content-Type": "application/x-www-form-urlencoded"}
        t0 = time.monotonic()
        for body in bodies:
            conn.request("POST", "/input/bulk", body, headers)
            reply = conn.getresponse().read()
            if reply != b"ok":
                raise Fail(f"fake emoncms answered {reply[:80]!r} to a bulk post")
        answer = server.wait_rows(batches * batch * PER_FRAME, 10)
        conn.close()
        frames = batches * batch
        elapsed = answer["last_arrival"] - t0
        return {"metrics": {"frames_per_s": frames / elapsed, "rows_per_s": frames * PER_FRAME / elapsed},
                "checks": {}}
    finally:
        server.stop()


def _quote(text: str) -> str:
    from urllib.parse import quote_plus
    return quote_plus(text)


def run_side_by_side(ctx: Context) -> dict:
    """The same burst through the minimal reference gateway, then through ours, each into a
    fresh fast sink (``bench/side_by_side.py``)."""
    frames = ctx.size["frames"]
    ref = measure_one("reference", frames, ctx.size["values"], NODES, ctx.timeout / 2)
    ours = measure_one("gateway", frames, ctx.size["values"], NODES, ctx.timeout / 2)
    for who, figures in (("reference", ref), ("gateway", ours)):
        checks = figures["checks"]
        if checks["frames"] != frames or checks["lost"] or checks["doubled"] or checks["out_of_order"]:
            raise Fail(f"{who}: delivery check failed: {checks}")
    return {
        "metrics": {
            "ratio": ours["frames_per_s"] / ref["frames_per_s"],
            "frames_per_s": ours["frames_per_s"], "ref_frames_per_s": ref["frames_per_s"],
            "cpu_us_per_frame": ours["cpu_us_per_frame"], "ref_cpu_us_per_frame": ref["cpu_us_per_frame"],
            "rss_idle_mb": ours["rss_idle_mb"], "ref_rss_idle_mb": ref["rss_idle_mb"],
            "peak_rss_mb": ours["peak_rss_mb"], "ref_peak_rss_mb": ref["peak_rss_mb"],
        },
        "checks": ours["checks"],
    }


SCENARIOS: Dict[str, Scenario] = {s.name: s for s in [
    Scenario("burst", "frames pushed as fast as accepted, end to end", run_burst,
             lambda q: {"frames": 10_000 if q else 100_000, "nodes": 10, "values": PER_FRAME},
             lambda q: 90 if q else 240),
    Scenario("latency", "10 frames/s, idle queue: send -> stored", run_latency,
             lambda q: {"seconds": 5 if q else 30, "rate": 10, "values": PER_FRAME},
             lambda q: 60 if q else 120),
    Scenario("idle_cpu", "no traffic after startup settles", run_idle_cpu,
             lambda q: {"seconds": 10 if q else 60, "settle_s": 2 if q else 5},
             lambda q: 60 if q else 150),
    Scenario("steady", "100 frames/s: CPU and RSS", run_steady,
             lambda q: {"seconds": 10 if q else 60, "rate": 100, "values": PER_FRAME},
             lambda q: 75 if q else 150),
    Scenario("catchup", "server down while readings pile up, then back", run_catchup,
             lambda q: {"frames": 8_640 if q else 86_400, "values": PER_FRAME, "outage_after_s": 1.0},
             lambda q: 90 if q else 240),
    Scenario("memory", "RSS with readings queued (server down)", run_memory,
             lambda q: {"frames": 20_000 if q else 100_000, "values": PER_FRAME, "settle_s": 1.0},
             lambda q: 60 if q else 120),
    Scenario("backlog", "1,000,000 readings queued (server down, default bounds), then drained", run_backlog,
             lambda q: {"frames": 100_000 if q else 1_000_000, "values": 2, "settle_s": 3.0},
             lambda q: 120 if q else 600),
    Scenario("serial", "RFM2Pi listener decoding a pty at full rate", run_serial,
             lambda q: {"frames": 2_000 if q else 20_000},
             lambda q: 60 if q else 180),
    Scenario("side_by_side", "burst through a minimal reference gateway, then ours, same fast sink",
             run_side_by_side,
             lambda q: {"frames": 20_000 if q else 50_000, "nodes": 10, "values": 5},
             lambda q: 120 if q else 240),
    Scenario("fake_ceiling", "calibration: the fake emoncms alone, bulk posts", run_fake_ceiling,
             lambda q: {"batches": 10 if q else 40, "batch": 500, "values": PER_FRAME},
             lambda q: 60 if q else 120),
]}

# (scenario, metric) -> (comparison, threshold, label, size key that must match the target's size)
TARGETS = {
    ("idle_cpu", "cpu_pct_core"): ("<=", 0.01, "<= 0.01 %", None),
    ("burst", "frames_per_s"): (">=", 20_000, ">= 20,000/s", None),
    ("latency", "p99_ms"): ("<", 20, "< 20 ms", None),
    ("catchup", "catchup_s"): ("<", 10, "< 10 s", ("frames", 86_400)),
    ("memory", "rss_queued_mb"): ("<", 40, "< 40 MB", ("frames", 100_000)),
    ("backlog", "rss_queued_mb"): ("<=", 100, "<= 100 MB", ("frames", 1_000_000)),
    ("steady", "rss_mb"): ("<", 30, "< 30 MB", None),
    ("side_by_side", "ratio"): (">=", 1.0, ">= 1.0", None),
    ("side_by_side", "rss_idle_mb"): ("<=", 25, "<= 25 MiB", None),
}

UNITS = {
    "frames_per_s": "frames/s", "rows_per_s": "rows/s", "ingest_frames_per_s": "frames/s",
    "drain_frames_per_s": "frames/s", "read_frames_per_s": "frames/s",
    "elapsed_s": "s", "catchup_s": "s", "first_row_after_s": "s", "cpu_s": "s",
    "daemon_cpu_pct": "% core", "server_cpu_pct": "% core", "cpu_pct_core": "% core",
    "cpu_pct_core_psutil": "% core", "wakeups_per_s": "/s",
    "p50_ms": "ms", "p99_ms": "ms", "max_ms": "ms",
    "rss_mb": "MB", "peak_rss_mb": "MB", "rss_idle_mb": "MB", "rss_queued_mb": "MB",
    "bytes_per_frame": "B", "achieved_rate": "frames/s", "spool_tmpfs_mb": "MB",
    "ram_total_mb": "MB", "peak_rss_drain_mb": "MB", "spool_disk_mb": "MB", "drain_s": "s",
    "ref_frames_per_s": "frames/s", "cpu_us_per_frame": "µs", "ref_cpu_us_per_frame": "µs",
    "ref_rss_idle_mb": "MB", "ref_peak_rss_mb": "MB", "ratio": "×",
}


def target_status(name: str, metric: str, value, size: dict) -> Optional[dict]:
    spec = TARGETS.get((name, metric))
    if spec is None:
        return None
    op, threshold, label, size_rule = spec
    if size_rule is not None and size.get(size_rule[0]) != size_rule[1]:
        return {"target": label, "status": "n/a",
                "why": f"target is for {size_rule[0]} = {size_rule[1]:,}"}
    if value is None:
        return {"target": label, "status": "MISS"}
    ok = value <= threshold if op == "<=" else value >= threshold if op == ">=" else value < threshold
    return {"target": label, "status": "PASS" if ok else "MISS"}


# -- running and reporting -----------------------------------------------------------------------
BUSY_WARNING = 10.0  # % of the machine used by other processes that makes a run's figures suspect


def _cpu_marks():
    """(CPU seconds the machine spent busy, CPU seconds of this process and its reaped children)."""
    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
        - getattr(t, "guest_nice", 0.0)
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


def others_cpu_pct(before, after, wall: float) -> float:
    """% of the whole machine used by processes other than the bench, its daemons and servers
    (they are reaped by the end of a run, so their CPU time is in our children's times)."""
    busy = after[0] - before[0]
    own = after[1] - before[1]
    return max(0.0, busy - own) / max(wall, 1e-9) / (os.cpu_count() or 1) * 100


def run_scenario(scenario: Scenario, runs: int, quick: bool, server_kind: str) -> dict:
    size = scenario.size(quick)
    timeout = scenario.timeout(quick)
    result = {"title": scenario.title, "size": size, "timeout_s": timeout, "runs": [],
              "status": "ok", "notes": []}
    for index in range(runs):
        ctx = Context(quick, server_kind, size, timeout)
        marks = _cpu_marks()
        started = time.monotonic()
        print(f"  {scenario.name} run {index + 1}/{runs} ...", end="", file=sys.stderr, flush=True)
        try:
            outcome = scenario.run(ctx)
        except Skip as exc:
            print(f" skipped: {exc}", file=sys.stderr)
            result.update(status="skipped", reason=str(exc))
            return result
        except (Fail, DaemonError) as exc:
            print(f" FAILED: {str(exc).splitlines()[0]}", file=sys.stderr)
            run = {"error": str(exc), "wall_s": time.monotonic() - started}
            if isinstance(exc, DaemonError):
                run["daemon_log"] = exc.log
            result["runs"].append(run)
            result["status"] = "failed"
            continue
        except Exception as exc:  # a bench bug or an environment problem: report, go on
            print(f" ERROR: {exc!r}".splitlines()[0][:300], file=sys.stderr)
            result["runs"].append({"error": f"{exc!r}", "traceback": traceback.format_exc(),
                                   "wall_s": time.monotonic() - started})
            result["status"] = "failed"
            continue
        outcome["wall_s"] = time.monotonic() - started
        outcome["others_cpu_pct"] = others_cpu_pct(marks, _cpu_marks(), outcome["wall_s"])
        result["runs"].append(outcome)
        result["notes"].extend(n for n in ctx.notes if n not in result["notes"])
        headline = ", ".join(f"{k}={_fmt(v)}" for k, v in list(outcome["metrics"].items())[:3])
        busy = (f"; other processes used {outcome['others_cpu_pct']:.0f} % of the machine"
                if outcome["others_cpu_pct"] >= BUSY_WARNING else "")
        print(f" {headline} ({outcome['wall_s']:.1f} s{busy})", file=sys.stderr)
    good = [run for run in result["runs"] if "metrics" in run]
    metrics = {}
    for key in (good[0]["metrics"] if good else {}):
        values = [run["metrics"][key] for run in good if run["metrics"].get(key) is not None]
        if not values:
            continue
        entry = {"median": statistics.median(values), "min": min(values), "max": max(values),
                 "values": values, "unit": UNITS.get(key, "")}
        status = target_status(scenario.name, key, entry["median"], size)
        if status:
            entry.update(status)
        metrics[key] = entry
    result["metrics"] = metrics
    others = [run["others_cpu_pct"] for run in good]
    result["others_cpu_pct_max"] = max(others) if others else None
    return result


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.4f}"


def print_table(results: dict, out=sys.stdout) -> None:
    rows = [("scenario", "metric", "median", "min-max", "unit", "target", "status")]
    for name, res in results["scenarios"].items():
        if res["status"] == "skipped":
            rows.append((name, "-", "-", "-", "", "", "skipped: " + res.get("reason", "")))
            continue
        errors = [run["error"] for run in res["runs"] if "error" in run]
        for metric, m in res.get("metrics", {}).items():
            spread = f"{_fmt(m['min'])}-{_fmt(m['max'])}" if len(m["values"]) > 1 else ""
            rows.append((name, metric, _fmt(m["median"]), spread, m["unit"],
                         m.get("target", ""), m.get("status", "")))
        for error in errors:
            rows.append((name, "-", "-", "-", "", "", "FAILED: " + error.splitlines()[0][:100]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(6)]
    for i, row in enumerate(rows):
        line = "  ".join(str(cell).ljust(widths[j]) if j not in (2, 3) else str(cell).rjust(widths[j])
                         for j, cell in enumerate(row[:6]))
        print((line + "  " + str(row[6])).rstrip(), file=out)
        if i == 0:
            print("-" * (sum(widths) + 2 * 6 + 6), file=out)
    busy = {name: res["others_cpu_pct_max"] for name, res in results["scenarios"].items()
            if (res.get("others_cpu_pct_max") or 0) >= BUSY_WARNING}
    if busy:
        print("\nwarning: other processes were busy during some runs (% of the machine, worst run): "
              + ", ".join(f"{name} {pct:.0f} %" for name, pct in busy.items())
              + "; their figures may be pessimistic", file=out)


def machine_info() -> dict:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model or platform.processor() or "unknown",
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_avg_at_start": list(os.getloadavg()),
    }


def gateway_info() -> dict:
    """Which daemon was measured: its folder and, when it is a git work tree, the commit."""
    gateway_dir = harness.DAEMON.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(gateway_dir),
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=str(gateway_dir), capture_output=True, text=True,
                                    timeout=10).stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"dir": str(gateway_dir), "git_commit": commit, "git_dirty": dirty}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmarks of the OEM Gateway daemon against a fake emoncms. Scenarios: "
                    + ", ".join(SCENARIOS) + ".")
    parser.add_argument("--quick", action="store_true",
                        help="1 run of each scenario at smaller sizes (whole suite < 60 s)")
    parser.add_argument("--runs", type=int, default=None,
                        help="repetitions of each scenario (default 3; 1 with --quick)")
    parser.add_argument("--json", metavar="PATH", default=str(DEFAULT_JSON),
                        help=f"where to write the results (default {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--only", metavar="NAME,...", default="",
                        help="run only these scenarios (comma-separated)")
    parser.add_argument("--gateway-dir", metavar="DIR", default=None,
                        help="benchmark the oemgateway.py in DIR (e.g. a 'git archive' of a commit) "
                             "instead of this work tree")
    parser.add_argument("--label", default=None,
                        help="free text stored with the results (e.g. the commit of --gateway-dir)")
    parser.add_argument("--server", choices=("proc", "inproc"), default="proc",
                        help="run the fake emoncms in its own process (default) or in threads "
                             "of the bench process")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    args.names = names
    if args.gateway_dir:
        try:
            harness.set_gateway_dir(args.gateway_dir)
        except FileNotFoundError as exc:
            parser.error(str(exc))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = {
        "suite": "oemgateway-bench",
        "format": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "runs": args.runs,
        "server": args.server,
        "machine": machine_info(),
        "gateway": dict(gateway_info(), label=args.label),
        "scenarios": {},
    }
    m = results["machine"]
    print(f"OEM Gateway bench: {m['cpu_model']}, {m['logical_cores']} cores, Python {m['python']}, "
          f"{'quick' if args.quick else 'full'}, {args.runs} run(s), fake emoncms {args.server}; "
          f"daemon {harness.DAEMON}", file=sys.stderr)
    try:
        for name in args.names:
            results["scenarios"][name] = run_scenario(SCENARIOS[name], args.runs, args.quick, args.server)
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what ran", file=sys.stderr)
        results["interrupted"] = True
    results["wall_s"] = time.monotonic() - started
    print_table(results)
    print(f"\n{len(results['scenarios'])} scenario(s) in {results['wall_s']:.0f} s", file=sys.stderr)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {path}", file=sys.stderr)
    failed = [n for n, r in results["scenarios"].items() if r["status"] == "failed"]
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed or results.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
