"""Side by side: the gateway and a minimal reference gateway (``bench/reference.py``: no spool,
no decoding, no accounting) through the same fast emoncms-compatible sink (``bench/sink.py``).

Each run sends the same burst to both, one after the other, each with a fresh sink and after
one warm-up frame (its HTTP connection open), and reports both rates and their ratio, the CPU
each spent per frame and each one's idle RSS. The gateway runs its shipped defaults with the
bench's emoncms settings (durable spool on). ``bench.run --only side_by_side`` runs it.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import psutil

from bench.harness import ROOT, Daemon, connect, frame_line, frames_payload, free_port, peak_rss_mb, \
    push_all, tmpfs_folder, write_config
from bench.server import WRITE_KEY

SETTLE_S = 2.0   # after 'ready', before the idle RSS is read


class Sink:
    """``bench.sink`` as a subprocess, spoken to over its stdin/stdout."""

    def __init__(self, frames: int, per_frame: int, link_kbps: float = 0.0, port: int = 0):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sink", "--frames", str(frames), "--per-frame", str(per_frame),
             "--link-kbps", str(link_kbps), "--port", str(port)],
            cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = self._read()["port"]
        self.url = f"http://127.0.0.1:{self.port}/emoncms"

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sink exited")
        return json.loads(line)

    def _say(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def reset(self) -> None:
        self._say("reset")
        self._read()

    def wait(self, frames: Optional[int] = None, timeout: Optional[float] = None) -> dict:
        """The figures once ``frames`` (default: all) are stored, or after ``timeout`` s."""
        self._say(" ".join(["wait"] + ([str(frames)] if frames else [])
                           + ([str(timeout)] if frames and timeout else [])))
        return self._read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Reference:
    """``bench.reference`` as a subprocess."""

    def __init__(self, port: int, url: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.reference", "--port", str(port), "--url", url,
             "--apikey", WRITE_KEY, "--batch", "500"],
            cwd=str(ROOT), stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the reference gateway did not start")
        self.pid = self.proc.pid
        self.ps = psutil.Process(self.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _cpu_s(ps: psutil.Process) -> float:
    times = ps.cpu_times()
    return times.user + times.system


def measure_one(kind: str, frames: int, per_frame: int, nodes, timeout: float,
                link_kbps: float = 0.0, buffer_settings: Optional[dict] = None) -> dict:
    """One burst of ``frames`` through ``kind`` ("reference" or "gateway") into a fresh sink."""
    payload, _ = frames_payload(frames, nodes, per_frame)
    sink = Sink(frames, per_frame, link_kbps)
    gateway = None
    folder = runtime = None
    watchdog = threading.Timer(timeout, lambda: (sink.kill(), gateway and gateway.kill()))
    watchdog.daemon = True
    watchdog.start()
    try:
        port = free_port()
        if kind == "reference":
            gateway = Reference(port, sink.url)
            ps = gateway.ps
        else:
            folder = tempfile.mkdtemp(prefix="oemgw-sbs-")
            runtime = tmpfs_folder("oemgw-sbs-run-")
            config = write_config(Path(folder), port, sink.url, WRITE_KEY, buffer_settings)
            gateway = Daemon(config, runtime, str(Path(folder) / "state"))
            gateway.wait_ready(30)
            ps = gateway.ps
        time.sleep(SETTLE_S)
        rss_idle = ps.memory_info().rss / 2 ** 20
        with connect(port) as sock:
            sock.sendall(frame_line(200, 0, per_frame))
            if not sink.wait(1, 15)["frames"]:
                raise RuntimeError(f"the warm-up frame never reached the sink through the {kind}")
        sink.reset()
        c0 = _cpu_s(ps)
        t0, _, t_accepted = push_all(port, payload, timeout=timeout)
        result = sink.wait()
        c1 = _cpu_s(ps)
        elapsed = result["last_arrival"] - t0
        return {"frames_per_s": frames / elapsed, "ingest_frames_per_s": frames / (t_accepted - t0),
                "cpu_us_per_frame": (c1 - c0) / frames * 1e6, "rss_idle_mb": rss_idle,
                "peak_rss_mb": peak_rss_mb(ps.pid), "requests": result["requests"],
                "body_bytes": result["body_bytes"], "elapsed_s": elapsed,
                "checks": {k: result[k] for k in ("frames", "lost", "doubled", "out_of_order")}}
    finally:
        watchdog.cancel()
        if gateway is not None:
            gateway.kill()
        sink.kill()
        for path in (folder, runtime):
            if path:
                shutil.rmtree(path, ignore_errors=True)


def compression(frames: int, link_kbps: float, runs: int, per_frame: int = 8) -> dict:
    """The gateway's burst through a sink that reads no faster than ``link_kbps`` (a slow
    uplink), with bulk bodies plain and zlib-compressed (emoncms' ``cb=1``): medians of
    frames/s, CPU µs per frame and body bytes per frame."""
    import statistics
    out = {}
    for mode in ("never", "always"):
        results = [measure_one("gateway", frames, per_frame, list(range(1, 11)), 600, link_kbps,
                               {"compress": mode}) for _ in range(runs)]
        for result in results:
            if result["checks"]["frames"] != frames or result["checks"]["lost"] or result["checks"]["doubled"]:
                raise RuntimeError(f"compress = {mode}: delivery check failed: {result['checks']}")
        out[mode] = {key: statistics.median(r[key] for r in results)
                     for key in ("frames_per_s", "cpu_us_per_frame")}
        out[mode]["body_bytes_per_frame"] = statistics.median(r["body_bytes"] / frames for r in results)
    return out


def backlog(frames: int, per_frame: int = 2) -> dict:
    """``frames`` readings queued while the sink is down (connections refused), then drained
    into the fast sink: readings/s from its start to the last stored, and the peak RSS."""
    port, sink_port = free_port(), free_port()
    payload, _ = frames_payload(frames, list(range(1, 11)), per_frame)
    folder = tempfile.mkdtemp(prefix="oemgw-sbs-")
    runtime = tmpfs_folder("oemgw-sbs-run-")
    gateway = sink = None
    try:
        config = write_config(Path(folder), port, f"http://127.0.0.1:{sink_port}/emoncms", WRITE_KEY,
                              {"max_items": 0})
        gateway = Daemon(config, runtime, str(Path(folder) / "state"))
        gateway.wait_ready(30)
        push_all(port, payload, timeout=600)
        time.sleep(3.0)   # the spool settles (its hot tier spills to the cold one)
        rss_queued = gateway.rss_mb()
        t0 = time.monotonic()
        sink = Sink(frames, per_frame, port=sink_port)
        result = sink.wait()
        elapsed = result["last_arrival"] - t0
        return {"drain_readings_per_s": frames / elapsed, "drain_s": elapsed, "rss_queued_mb": rss_queued,
                "peak_rss_mb": gateway.peak_rss_mb(),
                "checks": {k: result[k] for k in ("frames", "lost", "doubled", "out_of_order")}}
    finally:
        if gateway is not None:
            gateway.kill()
        if sink is not None:
            sink.kill()
        for path in (folder, runtime):
            shutil.rmtree(path, ignore_errors=True)


def main(argv=None) -> int:
    """``python -m bench.side_by_side compress [--frames N] [--link-kbps K] [--runs R]``;
    ``python -m bench.side_by_side backlog [--frames N]``."""
    import argparse
    parser = argparse.ArgumentParser(description="emoncms bulk bodies plain and compressed "
                                                 "(cb=1) through a slow link")
    parser.add_argument("what", choices=["compress", "backlog"])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--link-kbps", type=float, default=1000.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.what == "backlog":
        print(json.dumps(backlog(args.frames)))
        return 0
    figures = compression(args.frames, args.link_kbps, args.runs)
    for mode, values in figures.items():
        print(f"compress = {mode:6s}  {values['frames_per_s']:9,.0f} frames/s  "
              f"{values['cpu_us_per_frame']:6.1f} µs CPU/frame  {values['body_bytes_per_frame']:6.1f} body bytes/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
