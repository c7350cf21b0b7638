"""Never lose a reading: restarts, kill -9, reboots, a damaged spool, a full disk, a flaky
server. The daemon runs as a subprocess; emoncms is the test server."""

import os
import random
import signal
import shutil
import socket
import subprocess
import threading
import time

import pytest

from tests.support.configs import socket_emoncms_config
from tests.support.daemon import WAIT, free_port, runtime_dir_for, send_lines


def config(port, url, extra="", spill_after=0):
    gateway = f"spill_after = {spill_after}\n    spill_interval = 1\n    shutdown_timeout = 0.5\n    {extra}"
    return socket_emoncms_config(port, url, gateway, buffer="timeout = 0.5")


def ids(rows):
    return [int(r.value) for r in rows if r.node == "1" and r.name == "1"]


def assert_in_order_with_replays_only(delivered):
    """No reordering: a value lower than one already seen is a replay of a delivered one."""
    seen, highest = set(), -1
    for value in delivered:
        if value < highest:
            assert value in seen, f"{value} arrived after {highest} without having arrived before"
        seen.add(value)
        highest = max(highest, value)


def wait_accepted(gw, count=1):
    gw.wait_for_log("connection closed by the client", count=count)


class SteadySender(threading.Thread):
    """Sends ``1 <id>`` lines on one connection, one every ``interval`` s, noting when each left."""

    def __init__(self, port, start_id, interval=0.002):
        super().__init__(daemon=True)
        self.port, self.next_id, self.interval = port, start_id, interval
        self.sent = []            # (id, monotonic time sendall returned)
        self.stop = threading.Event()
        self.count_reached = threading.Condition()

    def run(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as s:
                deadline = time.monotonic()
                while not self.stop.is_set():
                    s.sendall(b"1 %d\n" % self.next_id)
                    with self.count_reached:
                        self.sent.append((self.next_id, time.monotonic()))
                        self.count_reached.notify_all()
                    self.next_id += 1
                    deadline += self.interval
                    self.stop.wait(max(0.0, deadline - time.monotonic()))  # pacing, not synchronisation
        except OSError:
            pass  # the gateway was killed under us

    def wait_sent(self, count):
        with self.count_reached:
            assert self.count_reached.wait_for(lambda: len(self.sent) >= count, WAIT)


def test_kill_9_under_load_during_an_outage_loses_nothing(gateway_factory, emoncms):
    rounds = int(os.environ.get("OEMGATEWAY_KILL_ROUNDS", "4"))
    rng = random.Random(rounds)
    port = free_port()
    emoncms.set_mode("refuse")
    text = config(port, emoncms.url)
    must_arrive, next_id = [], 0
    for _ in range(rounds):
        gw = gateway_factory(text)
        sender = SteadySender(port, next_id)
        sender.start()
        sender.wait_sent(rng.randint(50, 400))
        killed_at = time.monotonic()
        gw.kill()
        sender.stop.set()
        sender.join(WAIT)
        must_arrive += [i for i, sent in sender.sent if sent <= killed_at - 0.1]
        next_id = sender.next_id
    emoncms.set_mode("ok")
    gw = gateway_factory(text)
    required = set(must_arrive)
    rows = emoncms.wait_until(lambda rows: required <= set(ids(rows)), what="every reading accepted before a kill")
    assert_in_order_with_replays_only(ids(rows))
    gw.stop()


def test_clean_stop_during_an_outage_then_a_reboot_loses_nothing(gateway_factory, emoncms):
    port = free_port()
    emoncms.set_mode("refuse")
    text = config(port, emoncms.url, spill_after=3600)   # only the clean stop writes to disk
    gw = gateway_factory(text)
    send_lines(port, b"".join(b"1 %d\n" % i for i in range(500)))
    wait_accepted(gw)
    assert gw.stop() == 0
    assert "500 readings not delivered yet: kept in the spool" in gw.log
    shutil.rmtree(runtime_dir_for(gw.config_path.parent))   # a reboot empties the tmpfs
    emoncms.set_mode("ok")
    gw = gateway_factory(text)
    assert ids(emoncms.wait_for_rows(500)) == list(range(500))
    gw.stop()
    assert len(emoncms.rows) == 500


def test_healthy_destination_means_no_spool_files_on_disk(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, spill_after=1))
    for start in range(0, 300, 100):
        send_lines(port, b"".join(b"1 %d\n" % i for i in range(start, start + 100)))
        emoncms.wait_for_rows(start + 100)
    assert gw.stop() == 0
    state = gw.config_path.parent / "state" / "spool"
    assert sorted(os.listdir(state)) == []


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "nul", "empty"])
def test_a_damaged_spool_never_stops_the_gateway(gateway_factory, emoncms, damage):
    port = free_port()
    emoncms.set_mode("refuse")
    text = config(port, emoncms.url, spill_after=3600)
    gw = gateway_factory(text)
    for start in range(0, 300, 100):   # three frames on disk at the clean stop... one frame each
        send_lines(port, b"".join(b"1 %d\n" % i for i in range(start, start + 100)))
    wait_accepted(gw, 3)
    assert gw.stop() == 0
    shutil.rmtree(runtime_dir_for(gw.config_path.parent))
    spool = gw.config_path.parent / "state" / "spool"
    segment = next(p for p in spool.iterdir() if p.suffix == ".seg")
    data = bytearray(segment.read_bytes())
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    elif damage == "bitflip":
        data[len(data) // 2] ^= 0x01
    elif damage == "nul":
        data = bytearray(len(data))
    else:
        data = bytearray()
    segment.write_bytes(bytes(data))
    emoncms.set_mode("ok")
    gw = gateway_factory(text)
    send_lines(port, b"1 1000\n")
    rows = emoncms.wait_until(lambda rows: 1000 in ids(rows), what="a new reading")
    delivered = ids(rows)
    assert delivered[-1] == 1000
    assert delivered == sorted(delivered)
    if damage in ("nul", "empty"):
        assert delivered == [1000]
    assert "readings dropped: damaged on disk" in gw.log or damage == "empty"
    gw.stop()


def test_flaky_server_every_reading_arrives_once_in_order(gateway_factory, emoncms):
    rng = random.Random(4)
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    total = 0
    for burst in range(15):
        emoncms.fail_next(rng.randint(0, 3), rng.choice(["error500", "garbage", "reset", "hang"]))
        count = rng.randint(1, 60)
        send_lines(port, b"".join(b"1 %d\n" % i for i in range(total, total + count)))
        total += count
    rows = emoncms.wait_for_rows(total)
    assert ids(rows) == list(range(total))
    gw.stop()
    assert len(emoncms.rows) == total


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB file system for the cold tier (needs root to mount, as CI has)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the disk-full test needs root to mount a tiny tmpfs")
        pytest.skip("needs root to mount a tiny tmpfs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_keeps_delivering_and_never_crashes(gateway_factory, emoncms, tiny_disk):
    port = free_port()
    emoncms.set_mode("refuse")
    gw = gateway_factory(config(port, emoncms.url, f"state_dir = {tiny_disk}"))
    rng = random.Random(2)   # values that do not compress away: far more than 16 KiB
    lines = b"".join(b"1 %d %s\n" % (i, " ".join(str(rng.random()) for _ in range(20)).encode())
                     for i in range(2000))
    send_lines(port, lines)
    gw.wait_for_log("spool: cannot save .* No space left on device")
    emoncms.set_mode("ok")
    rows = emoncms.wait_until(lambda rows: len(ids(rows)) >= 2000, what="all 2000 readings")
    assert ids(rows) == list(range(2000))
    assert gw.proc.poll() is None
    gw.stop()


# -- nothing lost on a healthy gateway, whatever the burst ---------------------------------
def burst(count, first=0):
    return b"".join(b"1 %d 1\n" % i for i in range(first, first + count))


def assert_all_delivered_none_lost(gw, emoncms, expected):
    """Every reading in ``expected`` reaches emoncms, and the stopped gateway's accounting
    shows none dropped."""
    try:
        emoncms.wait_until(lambda rows: expected <= set(ids(rows)), what="every reading")
    except AssertionError:
        pass   # the counts below say how many are missing
    gw.stop()
    missing = expected - set(ids(emoncms.rows))
    accounting = gw.wait_for_log(r"buffer 'emoncms': accepted")
    assert not missing, f"{len(missing)} of {len(expected)} readings never delivered: {accounting}"
    assert f"accepted {len(expected)} = delivered {len(expected)} + queued 0 + dropped 0" in accounting


def test_a_stalled_gateway_loses_nothing_of_the_backlog_it_finds(gateway_factory, emoncms):
    """SIGSTOP while a client writes 10,000 readings: one loop pass then reads far more than
    the spool's in-memory tail holds, while the sender thread reads mid-pass."""
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, spill_after=60))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        gw.signal(signal.SIGSTOP)
        try:
            sender = threading.Thread(target=client.sendall, args=(burst(10_000),), daemon=True)
            sender.start()
            sender.join(1.0)   # the stall: about a second, or until the kernel holds it all
        finally:
            gw.signal(signal.SIGCONT)
        sender.join(WAIT)
    wait_accepted(gw)
    assert_all_delivered_none_lost(gw, emoncms, set(range(10_000)))


def test_many_clients_at_once_lose_nothing(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, spill_after=60))
    start = threading.Barrier(4)

    def client(n):
        data = burst(6_000, n * 6_000)
        start.wait(WAIT)
        send_lines(port, data)

    clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(WAIT)
    wait_accepted(gw, 4)
    assert_all_delivered_none_lost(gw, emoncms, set(range(24_000)))


# -- a lost or damaged cursor file ----------------------------------------------------------
def damage_cursor_file(path, damage):
    if damage == "delete":
        path.unlink()
    elif damage == "nul":
        path.write_bytes(bytes(path.stat().st_size))
    else:   # both slots: a flipped byte in each one's checksummed body
        data = bytearray(path.read_bytes())
        for slot in (0, 32768):
            data[slot + 40] ^= 0x55
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["delete", "nul", "both_slots"])
def test_a_lost_cursor_file_replays_the_backlog_on_disk(gateway_factory, emoncms, damage):
    port = free_port()
    emoncms.set_mode("refuse")
    text = config(port, emoncms.url, spill_after=3600)
    gw = gateway_factory(text)
    send_lines(port, burst(20_000))
    wait_accepted(gw)
    assert gw.stop() == 0
    shutil.rmtree(runtime_dir_for(gw.config_path.parent))   # a reboot: only the disk is left
    damage_cursor_file(gw.config_path.parent / "state" / "spool" / "cursors", damage)
    emoncms.set_mode("ok")
    gw = gateway_factory(text)
    assert_all_delivered_none_lost(gw, emoncms, set(range(20_000)))
    # once, from the spool (a slow first answer may add a delivery warning: not this one's business)
    warnings = [line for line in gw.log.splitlines()
                if "WARNING oemgateway.spool" in line and "20000 readings" in line]
    assert len(warnings) == 1 and "sent again" in warnings[0], gw.log
    at_stop = [line for line in gw.log.splitlines() if "INFO oemgateway: buffer 'emoncms': accepted" in line]
    assert len(at_stop) == 1 and "20000 of them replayed" in at_stop[0], gw.log
