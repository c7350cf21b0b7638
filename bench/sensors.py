"""What the DS18B20, pulse and GPIO listeners cost: CPU per poll, per pulse, and at idle.

    python -m bench.sensors                 # ~3 min
    python -m bench.sensors --seconds 20    # shorter idle windows
    sudo python -m bench.sensors --flash    # also the SD-card bytes a pulse total writes

1. **CPU per DS18B20 poll**: ``DS18B20Listener.poll()`` in this process over a w1 sysfs tree
   on tmpfs with 3 sensors, the thread's CPU time (``time.thread_time``) per poll. A real
   w1_slave read also costs the kernel's bit-banging of the bus, not counted here.
2. **CPU per pulse**: a pulse listener on the fake gpiod (``tests/fake_gpiod.py``: the library
   boundary only), 25 pulses a second for 8 s arriving in real time (each edge wakes the
   listener's thread), with ``rate_limit = 0`` (a frame per pulse, the worst case) and at the
   default (2 s). CPU of the listener's thread and the loop thread, from
   /proc/self/task/<tid>/schedstat, per pulse; the fake's own work happens on the driving
   thread and is not counted.
3. **SD-card writes of a pulse total** (``--flash``, needs root): an hour of one pulse a
   second (the clock simulated) counted by ``PulseTotal`` with its record on a loop-mounted
   ext4 image (4 KiB blocks, ``bench.flash``), at the default ``save_interval`` (60 s) and at
   0 (every pulse); bytes the block device wrote, journal and metadata included.
4. **Idle CPU**: the daemon (subprocess, as the service runs) with the bench's usual socket
   listener and emoncms buffer, then the same plus a ds18b20 listener (3 sensors), a pulse
   listener and a gpio listener (2 inputs) at their default intervals, with no pulses and
   no changes; CPU % of one core over ``--seconds`` (schedstat, all threads), after the first
   polls. The difference is what the sensors add, readings' delivery to emoncms included.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import Rig  # noqa: E402
from tests.support.fake_gpiod import FakeGpiod  # noqa: E402
from tests.support.gpiod_control import SHIM  # noqa: E402
from tests.support.w1_bus import W1Bus  # noqa: E402

SENSORS = ("28-000008e2db06", "28-000009770529", "28-0000096a49b4")


def thread_ns(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def ds18b20_poll_cpu(polls: int = 300) -> dict:
    from gateway.eventloop import EventLoop
    from listeners.ds18b20 import DS18B20Listener
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="bench-w1-", dir=base) as folder:
        bus = W1Bus(Path(folder))
        for i, sensor in enumerate(SENSORS):
            bus.set(sensor, 20000 + i * 1500)
        loop = EventLoop()
        listener = DS18B20Listener("temps", dict(ids=list(SENSORS[:2]), names=["cyl_top", "cyl_bot"], nodename="sensors",
                                                 w1_root=folder, interval=10.0, retry_max=300.0, bulk_read=True, nodelistonly=False,
                                                 max_line=4096), loop, lambda frame: None)
        listener.poll()   # warm up
        t0 = time.thread_time()
        for _ in range(polls):
            listener.poll()
        cpu = (time.thread_time() - t0) / polls
        loop.close()
    return {"us_per_poll_3_sensors": round(cpu * 1e6, 1), "polls": polls}


def pulse_cpu(rate_limit: float, pulses: int = 200, period_ms: int = 40, width_ms: int = 20) -> dict:
    from listeners.pulse import PulseListener
    from tests.support.loop_thread import LoopThread
    gpiod = FakeGpiod()
    chip = gpiod.add_chip("/dev/gpiochip0")
    with tempfile.TemporaryDirectory(prefix="bench-pulse-") as folder, LoopThread() as loop:
        loop_tid = loop.on_loop(threading.get_native_id)
        listener = PulseListener("gas", dict(chip="/dev/gpiochip0", pin_numbering="bcm", bias="pull_down",
                                             active_low=False, debounce_ms=10.0, pin="17", nodename="pulse", input="pulse",
                                             rate_limit=rate_limit, save_interval=60.0, initial_total=0,
                                             nodelistonly=False, max_line=4096),
                                 loop.loop, loop.emit, gpiod=gpiod)
        listener.gateway_dirs = (os.path.join(folder, "run"), os.path.join(folder, "state"))
        loop.on_loop(listener.open)
        loop.wait_for(lambda f: f)
        worker_tid = listener._thread.native_id
        w0, l0 = thread_ns(worker_tid), thread_ns(loop_tid)
        start = time.monotonic()
        for i in range(pulses):   # in real time: each edge is an event the thread wakes for
            for level, due in ((True, start + i * period_ms / 1000), (False, start + (i * period_ms + width_ms) / 1000)):
                time.sleep(max(0.0, due - time.monotonic()))
                chip.drive(17, level, int(due * 1e9))   # stamped when it was due, as the kernel would
        loop.wait_for(lambda f: f[-1].values == (pulses,), "the last total")
        w1, l1 = thread_ns(worker_tid), thread_ns(loop_tid)
        saves = listener.total.saves
        loop.on_loop(listener.close)
    return {"rate_limit_s": rate_limit, "pulses": pulses, "per_s": round(1000 / period_ms, 1),
            "us_per_pulse_listener_thread": round((w1 - w0) / pulses / 1000, 1),
            "us_per_pulse_loop_thread": round((l1 - l0) / pulses / 1000, 1),
            "frames": len(loop.frames), "sd_saves": saves}


def pulse_flash(save_interval: float, pulses: int = 3600) -> dict:
    from bench.flash import bytes_written, loop_mounted_ext4
    from listeners.pulse_total import PulseTotal

    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    with loop_mounted_ext4(1024) as (mount, device), tempfile.TemporaryDirectory(prefix="bench-mirror-") as mirror:
        clock = Clock()
        total = PulseTotal(os.path.join(mirror, "p.total"), str(mount / "pulse" / "p.total"), save_interval, clock)
        total.load()
        total.add(1)          # the file exists: what follows is the steady cost
        total.save()
        before, saves = bytes_written(device), total.saves
        for _ in range(pulses):
            clock.now += 1.0
            total.add(1)
            if total.save_due_in() == 0:
                total.save()
        written = bytes_written(device) - before
        total.close()
    return {"save_interval_s": save_interval, "pulses_1_per_s": pulses, "saves": total.saves - saves,
            "bytes_per_hour": written, "bytes_per_save": round(written / max(1, total.saves - saves))}


def idle_cpu(seconds: float, with_sensors: bool, deliver: bool = True, settle: float = 12.0) -> dict:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    w1 = tempfile.mkdtemp(prefix="bench-w1-", dir=base)
    bus = W1Bus(Path(w1))
    for i, sensor in enumerate(SENSORS):
        bus.set(sensor, 20000 + i * 1500)
    pins = tempfile.mkdtemp(prefix="gpio-")
    env_before = dict(os.environ)
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")])),
                      OEMGATEWAY_TEST_GPIOD=os.path.join(pins, "pins"))
    sections = f"""
    [[temps]]
        type = ds18b20
        ids = {SENSORS[0]}, {SENSORS[1]}
        names = cyl_top, cyl_bot
        w1_root = {w1}
    [[gas]]
        type = pulse
        pin = 17
    [[digital]]
        type = gpio
        pins = 22, 23
""" if with_sensors else ""
    try:
        with Rig("proc", seconds + settle + 60, buffer_settings=None if deliver else {"active": False},
                 extra_listeners=lambda: sections) as rig:
            d = rig.daemon
            time.sleep(settle)
            n0, w0, t0 = d.cpu_ns_precise(), d.wakeups(), time.monotonic()
            time.sleep(seconds)
            n1, w1_, t1 = d.cpu_ns_precise(), d.wakeups(), time.monotonic()
            rig.check()
            wall = t1 - t0
            return {"sensors": with_sensors, "delivered": deliver, "seconds": round(wall, 1),
                    "cpu_pct_core": round((n1 - n0) / 1e9 / wall * 100, 4),
                    "wakeups_per_s": round((w1_ - w0) / wall, 2), "threads": d.thread_count()}
    finally:
        os.environ.clear()
        os.environ.update(env_before)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sensors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each idle window (60)")
    parser.add_argument("--flash", action="store_true", help="also measure SD-card writes (needs root)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    args = parser.parse_args(argv)
    results = {"ds18b20_poll": ds18b20_poll_cpu(),
               "pulse_every_report": pulse_cpu(0.0), "pulse_default": pulse_cpu(2.0)}
    if args.flash:
        results.update(pulse_flash_default=pulse_flash(60.0), pulse_flash_every_pulse=pulse_flash(0.0))
    for key, value in results.items():
        print(f"{key}: {value}", flush=True)
    baseline = idle_cpu(args.seconds, False)
    print(f"idle_baseline: {baseline}", flush=True)
    sensors = idle_cpu(args.seconds, True)
    print(f"idle_with_sensors: {sensors}", flush=True)
    undelivered = idle_cpu(args.seconds, True, deliver=False)
    print(f"idle_with_sensors_buffer_inactive: {undelivered}", flush=True)
    results.update(idle_baseline=baseline, idle_with_sensors=sensors, idle_with_sensors_buffer_inactive=undelivered,
                   idle_added_pct_core=round(sensors["cpu_pct_core"] - baseline["cpu_pct_core"], 4))
    print(f"idle_added_pct_core: {results['idle_added_pct_core']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
