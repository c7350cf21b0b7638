"""What the spool costs the SD card, and how fast it recovers: ``python -m bench.flash [--quick]``.

Needs root: the cold tier is put on its own loop-mounted ext4 image (mkfs defaults: 4 KiB
blocks, journal, data=ordered), so the block device's "sectors written" counter
(``/sys/block/loopN/stat``) counts every byte the spool costs the device, ext4's journal and
metadata included (not the card's own internal amplification). ``os.sync()`` runs at every
phase boundary so nothing still in the page cache escapes the count.

Time is compressed tenfold: 10 readings/s with ``spill_after = spill_interval = 6`` s gives the
same 60 readings per saved frame as the real-life 1 reading/s (10 nodes every 10 s) with the
60 s defaults.
"""

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Daemon, free_port, tmpfs_folder
from bench.server import make_server
from gateway.spool import journal
from gateway.spool import CursorStore
from gateway.spool.storage import OsFiles
from gateway.frame import Frame
from tests.support.configs import socket_config

RATE = 10.0          # readings per second sent (ten times real life)
INTERVAL = 6         # spill_after and spill_interval (ten times shorter than the defaults)


def emontx_values(seq: int):
    """Eight values like an emonTx's: powers, a voltage, a temperature, energy counters."""
    return (120 + seq % 37, 1450 + (seq * 7) % 113, 0, 3 + seq % 5, 239.61 + (seq % 9) / 10,
            19.5 + (seq % 4) / 4, 1_250_000 + seq * 3, 88_000 + seq)


def frame_line(seq: int) -> bytes:
    return (f"{seq % 10} " + " ".join(map(str, emontx_values(seq))) + "\n").encode()


@contextlib.contextmanager
def loop_mounted_ext4(size_mb: int = 256):
    folder = Path(tempfile.mkdtemp(prefix="oemgw-flash-"))
    image, mount = folder / "disk.img", folder / "mnt"
    mount.mkdir()
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                    str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mount)], check=True,
                                capture_output=True, text=True).stdout.strip()
        yield mount, os.path.basename(device)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        image.unlink()
        mount.rmdir()
        folder.rmdir()


def bytes_written(device: str) -> int:
    os.sync()
    with open(f"/sys/block/{device}/stat") as stat:
        return int(stat.read().split()[6]) * 512


def write_config(folder: Path, port: int, url: str, apikey: str, state_dir: Path, extra: str = "") -> Path:
    path = folder / "oemgateway.conf"
    path.write_text(socket_config(port, f"""
    [[emoncms]]
    type = emoncms
    url = {url}
    apikey = {apikey}
    retry_max = 1
    """, gateway=f"""
    state_dir = {state_dir}
    spill_after = {INTERVAL}
    spill_interval = {INTERVAL}
    {extra}
    """, loglevel="INFO"))
    return path


def send_paced(port: int, first: int, count: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        deadline = time.monotonic()
        for seq in range(first, first + count):
            sock.sendall(frame_line(seq))
            deadline += 1.0 / RATE
            time.sleep(max(0.0, deadline - time.monotonic()))   # load pacing


def flash_cost(quick: bool) -> dict:
    healthy_s, outage_s = (10, 30) if quick else (60, 180)
    server = make_server("inproc")
    from tests.support.emoncms_server import WRITE_KEY
    result = {}
    with loop_mounted_ext4() as (mount, device), tempfile.TemporaryDirectory() as work:
        port = free_port()
        config = write_config(Path(work), port, server.url,
                              WRITE_KEY, mount / "state")
        runtime = tmpfs_folder("oemgw-flash-run-")
        daemon = Daemon(config, runtime_dir=runtime)
        try:
            daemon.wait_ready()
            seq = 0
            send_paced(port, seq, 20)
            seq += 20
            server.wait_rows(20 * 8, 30)
            time.sleep(INTERVAL + 1)   # let start-up writes (folders) settle before counting

            start = bytes_written(device)
            count = int(healthy_s * RATE)
            send_paced(port, seq, count)
            seq += count
            server.wait_rows(seq * 8, 60)
            time.sleep(INTERVAL + 1)   # a whole spill interval with nothing to save
            healthy = bytes_written(device) - start
            result["healthy_bytes_per_reading"] = healthy / count

            server.set_mode("refuse")
            start = bytes_written(device)
            count = int(outage_s * RATE)
            send_paced(port, seq, count)
            seq += count
            time.sleep(INTERVAL + 1)   # the last readings get saved too
            outage = bytes_written(device) - start
            result["outage_bytes_per_reading"] = outage / count

            start = bytes_written(device)
            server.set_mode("ok")
            server.wait_rows(seq * 8, 120)
            time.sleep(2 * INTERVAL + 1)   # cursors saved, fully delivered segments deleted
            drain = bytes_written(device) - start
            result["drain_bytes_per_reading"] = drain / count
            result["outage_and_drain_bytes_per_reading"] = (outage + drain) / count
            result["readings_in_outage"] = count
            left = sorted(os.listdir(mount / "state" / "spool"))
            result["spool_files_after_drain"] = left
        finally:
            daemon.kill()
            server.stop()
            subprocess.run(["rm", "-rf", runtime], check=False)
    return result


def synthetic_spool(folder: Path, megabytes: int) -> int:
    """A cold spool of ``megabytes`` MiB of compressed 60-reading frames, nothing acknowledged."""
    files = OsFiles(str(folder))
    seq, size, segment, segment_size = 1, 0, None, 0
    while size < megabytes * 1024 * 1024:
        lines = [journal.encode_reading(Frame(s % 10, emontx_values(s), 1_700_000_000 + s, None, None, "tcp"))
                 for s in range(seq, seq + 60)]
        data = journal.encode_frame(seq, lines, compress=True)
        if segment is None or segment_size + len(data) > 1024 * 1024:
            segment, segment_size = journal.segment_name(seq), 0
        files.append(segment, data)
        segment_size += len(data)
        size += len(data)
        seq += 60
    CursorStore(files).save({"head": seq - 1, "cursors": {"emoncms": {"acked": 0, "skips": []}},
                             "corrections": []}, sync=False)
    files.close()
    return seq - 1


def recovery_time(quick: bool) -> dict:
    megabytes = 8 if quick else 64
    server = make_server("inproc")
    from tests.support.emoncms_server import WRITE_KEY
    with tempfile.TemporaryDirectory() as work:
        state = Path(work) / "state"
        readings = synthetic_spool(state / "spool", megabytes)
        server.set_mode("refuse")
        port = free_port()
        config = write_config(Path(work), port, server.url, WRITE_KEY, state)
        runtime = tmpfs_folder("oemgw-recovery-run-")
        started = time.monotonic()
        daemon = Daemon(config, runtime_dir=runtime)
        try:
            daemon.wait_ready(120)
            ready = time.monotonic() - started
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(frame_line(0))
            accepting = time.monotonic() - started
        finally:
            daemon.kill()
            server.stop()
            subprocess.run(["rm", "-rf", runtime], check=False)
    return {"spool_mb": megabytes, "readings": readings, "seconds_to_ready": ready,
            "seconds_to_accept_a_frame": accepting}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flash", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases, an 8 MiB spool")
    parser.add_argument("--json", default="bench/results/flash.json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.flash needs root (it loop-mounts an ext4 image)", file=sys.stderr)
        return 2
    results = {"flash": flash_cost(args.quick), "recovery": recovery_time(args.quick),
               "date": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick}
    print(json.dumps(results, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
