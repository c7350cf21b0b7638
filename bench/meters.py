"""What meters cost the daemon: CPU per poll (Modbus TCP, Modbus RTU, M-Bus), the time from a
meter's answer to its reading stored by the destination, and the idle CPU that four polling
devices at their default interval add.

    python -m bench.meters [--quick] [--runs N] [--json PATH]

The daemon runs as a subprocess (``bench.harness.Daemon``) with one emoncms buffer to the fake
emoncms (in this process, ``bench.server.InProcServer``, which timestamps every row it stores).
The meters are the tests' simulated ones: a real pymodbus server on a TCP port or behind a
pseudo-terminal line (``tests.support.modbus_server``), Kamstrup and multi-telegram M-Bus meters
answering real telegrams on a pseudo-terminal (``tests.support.mbus_meter``); each records the
monotonic time of every answer it sends.

- **poll_*:** one meter polled every 0.1 s for ``seconds``: the daemon's CPU (schedstat, all
  threads: the poll, the frame's way through the spool, the HTTP post) divided by the polls,
  counted as frames stored; and, for each stored reading, the time from the meter's last answer
  before it to the row being stored by the fake emoncms (p50, p99, max).
- **idle:** the bench's idle daemon (one socket listener, one emoncms buffer), then the same with
  two Modbus TCP meters and two M-Bus meters at the default interval (10 s): CPU % of one core
  over ``seconds`` after the first polls, and the difference.
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional

from bench.harness import ROOT, Daemon, free_port, percentile, tmpfs_folder, write_config
from bench.server import WRITE_KEY, InProcServer
from tests.support.mbus_meter import MeterBus, kamstrup_601, multi_telegram_meter
from tests.support.modbus_server import SDM120_REGISTERS, ModbusServer, SimulatedMeter

POLL_INTERVAL = 0.1
DEFAULT_JSON = ROOT / "bench" / "results" / "meters.json"


@contextmanager
def daemon_with(listeners: str, with_socket: bool = False, buffer_settings: Optional[dict] = None):
    """A fake emoncms and the daemon with these ``[listeners]`` sections; both stopped after."""
    server = InProcServer()
    folder = Path(tempfile.mkdtemp(prefix="oemgw-bench-meters-"))
    runtime = tmpfs_folder("oemgw-bench-meters-run-")
    daemon = None
    try:
        config = write_config(folder, free_port(), server.url, WRITE_KEY, buffer_settings,
                              extra_listeners=listeners, with_socket=with_socket)
        daemon = Daemon(config, runtime, str(folder / "state"))
        daemon.wait_ready(30)
        yield daemon, server
    finally:
        if daemon is not None:
            daemon.kill()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


def section(name: str, kind: str, settings: Dict[str, object], meters: Dict[str, Dict[str, object]]) -> str:
    lines = [f"    [[{name}]]", f"        type = {kind}"] + [f"        {k} = {v}" for k, v in settings.items()]
    lines.append("        [[[meters]]]")
    for meter, keys in meters.items():
        lines.append(f"            [[[[{meter}]]]]")
        lines += [f"                {k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def cpu_ns(daemon: Daemon) -> int:
    value = daemon.cpu_ns_precise()
    if value is None:
        raise RuntimeError("/proc/PID/task/*/schedstat is not readable here")
    return value


def measure_polls(listeners: str, input_name: str, per_frame: int, answered: Callable[[], List[float]],
                  seconds: float) -> dict:
    """Poll one meter every POLL_INTERVAL; CPU per poll and answer -> stored latencies."""
    with daemon_with(listeners) as (daemon, server):
        if not server.wait_rows(per_frame * 5, 30)["ok"]:
            raise RuntimeError("the meter's readings never reached the server; daemon log:\n" + daemon.log_tail())
        rows0, cpu0, t0 = server.count(), cpu_ns(daemon), time.monotonic()
        time.sleep(seconds)
        rows1, cpu1, t1 = server.count(), cpu_ns(daemon), time.monotonic()
        polls = (rows1 - rows0) / per_frame
        answers = sorted(answered())
        latencies = []
        for _, _, arrival in server.arrivals_of(input_name):
            if t0 <= arrival <= t1:
                before = [a for a in answers if a <= arrival]
                if before:
                    latencies.append((arrival - before[-1]) * 1000)
    return {"polls": polls, "polls_per_s": polls / (t1 - t0),
            "cpu_ms_per_poll": (cpu1 - cpu0) / 1e6 / polls if polls else None,
            "cpu_pct_core": (cpu1 - cpu0) / 1e9 / (t1 - t0) * 100,
            "answer_to_stored_p50_ms": percentile(latencies, 50),
            "answer_to_stored_p99_ms": percentile(latencies, 99),
            "answer_to_stored_max_ms": max(latencies) if latencies else None}


def poll_modbus_tcp(seconds: float) -> dict:
    modbus = ModbusServer([SimulatedMeter(1, input=SDM120_REGISTERS)])
    port = modbus.start_tcp()
    try:
        return measure_polls(section("meters", "modbus_tcp", {"host": "127.0.0.1", "port": port,
                                                               "interval": POLL_INTERVAL},
                                     {"electric": {"meter": "sdm120", "address": 1}}),
                             "P", 9, lambda: modbus.answered, seconds)
    finally:
        modbus.stop()


def poll_modbus_rtu(seconds: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="oemgw-bench-rtu-"))
    modbus = ModbusServer([SimulatedMeter(1, input=SDM120_REGISTERS)])
    link = modbus.start_rtu(folder / "ttyRS485")
    try:
        return measure_polls(section("meters", "modbus", {"com_port": link, "interval": POLL_INTERVAL},
                                     {"electric": {"meter": "sdm120", "address": 1}}),
                             "P", 9, lambda: modbus.answered, seconds)
    finally:
        modbus.stop()
        shutil.rmtree(folder, ignore_errors=True)


def poll_mbus(seconds: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="oemgw-bench-mbus-"))
    bus = MeterBus([kamstrup_601(1)])
    link = bus.start_serial(folder / "ttyMBUS")
    try:
        return measure_polls(section("meters", "mbus", {"com_port": link, "interval": POLL_INTERVAL},
                                     {"heat": {"meter": "kamstrup_multical", "address": 1}}),
                             "energy", 8, lambda: bus.answered, seconds)
    finally:
        bus.stop()
        shutil.rmtree(folder, ignore_errors=True)


def idle_cpu_pct(listeners: str, settle: float, seconds: float, buffer_settings: Optional[dict] = None) -> float:
    with daemon_with(listeners, with_socket=True, buffer_settings=buffer_settings) as (daemon, _):
        time.sleep(settle)
        cpu0, t0 = cpu_ns(daemon), time.monotonic()
        time.sleep(seconds)
        return (cpu_ns(daemon) - cpu0) / 1e9 / (time.monotonic() - t0) * 100


def idle(seconds: float) -> dict:
    """The idle daemon, then the same with four meters at the default interval."""
    baseline = idle_cpu_pct("", 5, seconds)
    folder = Path(tempfile.mkdtemp(prefix="oemgw-bench-idle-"))
    modbus = ModbusServer([SimulatedMeter(1, input=SDM120_REGISTERS), SimulatedMeter(2, input=SDM120_REGISTERS)])
    port = modbus.start_tcp()
    bus = MeterBus([kamstrup_601(1), multi_telegram_meter(2)])
    link = bus.start_serial(folder / "ttyMBUS")
    try:
        listeners = (section("electric", "modbus_tcp", {"host": "127.0.0.1", "port": port},
                             {"heatpump": {"meter": "sdm120", "address": 1}, "grid": {"meter": "sdm120", "address": 2}})
                     + section("heat", "mbus", {"com_port": link},
                               {"heatmeter": {"meter": "kamstrup_multical", "address": 1},
                                "multi": {"address": 2}}))
        with_meters = idle_cpu_pct(listeners, 12, seconds)
        not_sent = idle_cpu_pct(listeners, 12, seconds, {"active": False})
    finally:
        modbus.stop()
        bus.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {"cpu_pct_core_idle": baseline, "cpu_pct_core_4_meters": with_meters,
            "cpu_pct_core_added": with_meters - baseline,
            "cpu_pct_core_4_meters_buffer_inactive": not_sent,
            "cpu_pct_core_added_buffer_inactive": not_sent - baseline}


SCENARIOS = {
    "poll_modbus_tcp": ("one Modbus TCP meter (SDM120, 9 registers) every 0.1 s", poll_modbus_tcp),
    "poll_modbus_rtu": ("one Modbus RTU meter (SDM120) on a pty line every 0.1 s", poll_modbus_rtu),
    "poll_mbus": ("one M-Bus heat meter (Kamstrup 601: SND_NKE, REQ_UD2) on a pty every 0.1 s", poll_mbus),
    "idle": ("idle, then with 2 Modbus TCP + 2 M-Bus meters at interval 10 s", idle),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (5 s polling, 20 s idle)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", help="scenarios, comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    results: Dict[str, dict] = {}
    for name in names:
        title, run = SCENARIOS[name]
        seconds = (20 if args.quick else 60) if name == "idle" else (5 if args.quick else 20)
        runs: List[dict] = []
        for index in range(args.runs):
            print(f"  {name} run {index + 1}/{args.runs} ...", file=sys.stderr, flush=True)
            runs.append(run(seconds))
        results[name] = {"title": title, "seconds": seconds, "runs": runs,
                         "median": {key: median([r[key] for r in runs]) for key in runs[0]}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    for name, result in results.items():
        print(f"{name}: {result['title']} ({result['seconds']} s, median of {len(result['runs'])})")
        for key, value in result["median"].items():
            print(f"    {key:<28} {value:.4g}" if value is not None else f"    {key:<28} -")
    return 0


def median(values: List[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


if __name__ == "__main__":
    sys.exit(main())
