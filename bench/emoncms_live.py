"""Measurements against a real emoncms: refused nodes, refused rows, catch-up after outages.

The daemon (this work tree's, or ``--gateway-dir``'s) sends to the emoncms at ``--url`` through a
small HTTP proxy run here, which counts requests and rows and can be cut (connections refused,
as when Apache is down) and restored. Readings come in on the daemon's socket listener; the
daemon's ``/status`` tells when its queue is empty. Nothing here is a test: it prints numbers.

    python -m bench.emoncms_live backlog --nodes 40 --readings 20000
    python -m bench.emoncms_live backlog --nodes 32 --readings 20000
    python -m bench.emoncms_live bad-rows --readings 20000 --every 1000 [--check] [--unnamed]
    python -m bench.emoncms_live bad-rates --readings 20000 --rates 1e-5,1e-4,1e-3,1e-2
    python -m bench.emoncms_live accumulator
    python -m bench.emoncms_live catchup --outages 10 --outage 60

Options common to all: ``--url`` (http://127.0.0.1:8088), ``--apikey-file`` (the write key),
``--reset`` (a command that deletes every input and feed: emoncms allows 32 node ids per user,
so each run starts clean), ``--gateway-dir``. Run from the repo root with the project's venv.
"""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from bench import harness
from tests.support.configs import socket_config

# -- the proxy ------------------------------------------------------------------------------


class CutProxy:
    """Forwards HTTP to ``upstream``; counts requests and rows; ``cut()``/``restore()``."""

    def __init__(self, upstream: str):
        target = urllib.parse.urlsplit(upstream)
        self.upstream = (target.hostname, target.port or 80)
        self.port = harness.free_port()
        self.requests = self.rows = 0
        self.lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._connections: set = set()
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, path: str, body: bytes) -> None:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        rows = len(json.loads(form["data"][0])) if "bulk" in path and "data" in form else 1
        with self.lock:
            self.requests += 1
            self.rows += rows

    def reset_counts(self) -> None:
        with self.lock:
            self.requests = self.rows = 0

    def restore(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                proxy._connections.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                except OSError:
                    pass
                proxy._connections.discard(self.connection)

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                # A new upstream connection per request: never a stale kept-alive one.
                upstream = HTTPConnection(*proxy.upstream, timeout=300)
                upstream.connect()
                upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body, headers)
                reply = upstream.getresponse()
                data = reply.read()
                upstream.close()
                if self.path.split("?")[0].endswith(("/input/bulk", "/input/post")):
                    proxy.count(self.path, body)
                self.send_response(reply.status, reply.reason)
                for key, value in reply.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length",
                                           "keep-alive", "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        server = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server

    def cut(self) -> None:
        server, self._server = self._server, None
        server.shutdown()
        server.server_close()
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True   # restore() reopens the same port


# -- emoncms --------------------------------------------------------------------------------


class Emoncms:
    def __init__(self, url: str, key: str):
        self.url, self.key = url.rstrip("/"), key

    def call(self, path: str, form: Optional[dict] = None, **params) -> str:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}/{path}?{query}",
                                         data=urllib.parse.urlencode(form).encode() if form else None,
                                         headers={"Authorization": "Bearer " + self.key})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.read().decode()

    def accumulator(self, node: str, name: str) -> int:
        """Give input node/name an Accumulator process to a new feed; returns the feed id."""
        self.call("input/post", node=node, fulljson=json.dumps({name: 0}))
        inputs = json.loads(self.call("input/list.json"))
        input_id = next(i["id"] for i in inputs if i["nodeid"] == node and i["name"] == name)
        feed = json.loads(self.call("feed/create.json", tag="bench", name=f"{node}_{name}_acc",
                                    engine=2, options="{}"))["feedid"]
        answer = self.call("input/process/set", inputid=input_id, form={
            "processlist": json.dumps([{"fn": "process__accumulator", "args": [feed]}])})
        assert json.loads(answer)["success"], answer
        return feed

    def feed_value(self, feed: int) -> float:
        return json.loads(self.call("feed/timevalue.json", id=feed))["value"]


# -- the daemon -----------------------------------------------------------------------------


class Gateway:
    """The daemon with a socket listener and one emoncms buffer to ``url``; status on a port."""

    def __init__(self, url: str, key: str, buffer: str = "", env_shim: str = ""):
        self.folder = Path(tempfile.mkdtemp(prefix="oemgw-live-"))
        self.port, self.status_port = harness.free_port(), harness.free_port()
        config = self.folder / "oemgateway.conf"
        config.write_text(textwrap.dedent(socket_config(self.port, f"""
            [[emoncms]]
            type = emoncms
            url = {url}
            apikey = {key}
            max_items = 500000
            """, gateway=f"clock = trusted\n    status_port = {self.status_port}", loglevel="INFO")) + buffer)
        if env_shim:
            shim = self.folder / "shim"
            shim.mkdir()
            (shim / "sitecustomize.py").write_text(env_shim)
        self.runtime = harness.tmpfs_folder("oemgw-live-")
        if env_shim:
            os.environ["PYTHONPATH"] = str(self.folder / "shim")
        try:
            self.daemon = harness.Daemon(config, self.runtime, str(self.folder / "state"))
        finally:
            os.environ.pop("PYTHONPATH", None)
        self.daemon.wait_ready()

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/status", timeout=10) as r:
            return json.load(r)["buffers"]["emoncms"]

    def wait_queued(self, predicate, timeout: float = 600.0, every: float = 0.01) -> float:
        """Poll /status until ``predicate(queued)``; returns the monotonic time it held."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self.status()["queued"]):
                return time.monotonic()
            time.sleep(every)
        raise TimeoutError(f"queue never emptied: {self.status()}")

    def push(self, payload: bytes) -> None:
        harness.push_all(self.port, payload)

    def close(self) -> None:
        self.daemon.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.runtime, ignore_errors=True)


SKIP_CHECK = """
import sys
sys.path.insert(0, %r)
import buffers.emoncms
buffers.emoncms.EmoncmsBuffer.check = lambda self, frame: None   # send what emoncms refuses
"""

UNNAMED = """
import buffers.base
_send = buffers.emoncms.EmoncmsBuffer.send
def _send_naming_no_row(self, batch):
    try:
        _send(self, batch)
    except buffers.base.RejectedError as exc:   # as from a server that does not say which row
        raise buffers.base.RejectedError(str(exc)) from None
buffers.emoncms.EmoncmsBuffer.send = _send_naming_no_row
"""


# -- scenarios ------------------------------------------------------------------------------


def backlog(args, emoncms: Emoncms, nodes: int, readings: int, bad_every: int = 0,
            unnamed: bool = False) -> dict:
    """``readings`` readings round-robin over ``nodes`` queued while emoncms is cut off, then
    back: time until the gateway's queue is empty, requests and rows sent. ``unnamed``: the
    gateway is made to take emoncms' refusals as naming no row (and search)."""
    reset(args)
    proxy = CutProxy(args.url)
    shim = ""
    if bad_every and not args.check:
        shim = SKIP_CHECK % str(harness.DAEMON.parent) + (UNNAMED if unnamed else "")
    gateway = Gateway(proxy.url, emoncms.key, env_shim=shim)
    try:
        proxy.cut()
        rng = random.Random(1)
        bad = set()
        if bad_every:   # one bad reading at a random place in every block of bad_every
            bad = {n for n in (block + rng.randrange(bad_every)
                               for block in range(0, readings, bad_every)) if n < readings}
        lines = [f"{i % nodes + 1} {1e39 if i in bad else i}\n" for i in range(readings)]
        gateway.push("".join(lines).encode())
        proxy.restore()
        start = time.monotonic()
        done = gateway.wait_queued(lambda queued: queued == 0)
        status = gateway.status()
        return {"nodes": nodes, "readings": readings, "bad": len(bad), "drain_s": round(done - start, 2),
                "requests": proxy.requests, "rows_sent": proxy.rows,
                "rows_per_reading": round(proxy.rows / readings, 3),
                "delivered": status["delivered"], "dropped": status["dropped"]}
    finally:
        gateway.close()
        proxy.cut()


def accumulator(args, emoncms: Emoncms, rounds: int = 50, nodes: int = 40) -> dict:
    """An Accumulator on node acc; ``rounds`` readings of 1 for it among ``nodes`` - 1 other
    nodes, queued through an outage, then delivered: the feed should read ``rounds``."""
    reset(args)
    feed = emoncms.accumulator("acc", "1")
    proxy = CutProxy(args.url)
    gateway = Gateway(proxy.url, emoncms.key)
    try:
        proxy.cut()
        lines = []
        for i in range(rounds):
            lines.append("acc 1\n")
            lines += [f"{n} {i}\n" for n in range(1, nodes)]
        gateway.push("".join(lines).encode())
        proxy.restore()
        gateway.wait_queued(lambda queued: queued == 0)
        return {"readings_of_acc": rounds, "accumulator": emoncms.feed_value(feed),
                "requests": proxy.requests, "rows_sent": proxy.rows}
    finally:
        gateway.close()
        proxy.cut()


def catchup(args, emoncms: Emoncms) -> dict:
    """Readings at ``--rate`` per second; ``--outages`` times emoncms is cut for ``--outage`` s:
    seconds from its return until the gateway's queue is empty."""
    reset(args)
    proxy = CutProxy(args.url)
    gateway = Gateway(proxy.url, emoncms.key)
    stop = threading.Event()
    sock = harness.connect(gateway.port)
    lines = (f"{i % 10 + 1} {i}\n".encode() for i in range(10 ** 9))
    sender = threading.Thread(target=harness.paced_send, args=(sock, lines, args.rate),
                              kwargs={"stop_event": stop}, daemon=True)
    sender.start()
    times = []
    try:
        time.sleep(5)
        for _ in range(args.outages):
            proxy.cut()
            time.sleep(args.outage)
            queued = gateway.status()["queued"]
            proxy.restore()
            back = time.monotonic()
            caught_up = gateway.wait_queued(lambda q: q == 0, every=0.005)
            times.append(round(caught_up - back, 2))
            print(f"  outage {len(times)}: {queued} readings queued, caught up {times[-1]} s after "
                  f"the server came back", flush=True)
            time.sleep(args.pause)
        return {"outage_s": args.outage, "runs": len(times), "median_s": statistics.median(times),
                "worst_s": max(times), "all_s": times}
    finally:
        stop.set()
        sender.join(5)
        sock.close()
        gateway.close()
        proxy.cut()


def bad_rates(args, emoncms: Emoncms) -> dict:
    """The bad-rows measurement for each of ``--rates``, refusals named (as emoncms' are) and
    not: rows sent per reading and drain time against the clean backlog of the same size. A
    rate too low for one bad reading in ``--readings`` gets a backlog of 1 / rate. The real
    server's drain time varies by 15 % and more from run to run, so each is run ``--runs``
    times, a clean one first in each round, and the medians are compared."""
    nodes = min(args.nodes, 32)
    results = []
    for rate in (float(r) for r in args.rates.split(",")):
        every = round(1 / rate)
        readings = max(args.readings, every)
        times = {"clean": [], "named": [], "unnamed": []}
        runs = {"named": [], "unnamed": []}
        for _ in range(args.runs):
            times["clean"].append(backlog(args, emoncms, nodes, readings)["drain_s"])
            for unnamed in (False, True):
                run = backlog(args, emoncms, nodes, readings, bad_every=every, unnamed=unnamed)
                kind = "unnamed" if unnamed else "named"
                times[kind].append(run["drain_s"])
                runs[kind].append(run)
        clean = round(statistics.median(times["clean"]), 2)
        for kind in ("named", "unnamed"):
            last = runs[kind][-1]
            result = {"rate": rate, "refusals": kind, "readings": readings, "bad": last["bad"],
                      "rows_per_reading": last["rows_per_reading"], "requests": last["requests"],
                      "drain_s": times[kind], "clean_s": times["clean"],
                      "time_ratio": round(statistics.median(times[kind]) / clean, 2)}
            results.append(result)
            print(f"  1/{every} {kind}: {result['bad']} bad of {readings}, rows "
                  f"{result['rows_per_reading']}, {result['requests']} requests; drain "
                  f"{round(statistics.median(times[kind]), 2)} s (runs {times[kind]}) against "
                  f"clean {clean} s (runs {times['clean']}): {result['time_ratio']}x", flush=True)
    return {"runs": results}


def reset(args) -> None:
    if args.reset:
        subprocess.run(args.reset, shell=True, check=True, stdout=subprocess.DEVNULL)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["backlog", "bad-rows", "bad-rates", "accumulator",
                                             "catchup"])
    parser.add_argument("--url", default="http://127.0.0.1:8088")
    parser.add_argument("--apikey-file", required=True)
    parser.add_argument("--reset", default="", help="shell command that empties the emoncms user")
    parser.add_argument("--gateway-dir", help="measure the oemgateway.py in this folder")
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--readings", type=int, default=20000)
    parser.add_argument("--every", type=int, default=1000, help="bad-rows: one bad reading per N")
    parser.add_argument("--check", action="store_true",
                        help="bad-rows: let the gateway drop what emoncms cannot store before "
                             "sending (by default they are sent, to measure the refusals)")
    parser.add_argument("--unnamed", action="store_true",
                        help="bad-rows: take emoncms' refusals as naming no row (the engine "
                             "searches; rows in front of a refused one reach emoncms twice)")
    parser.add_argument("--rates", default="1e-5,1e-4,1e-3,1e-2",
                        help="bad-rates: bad readings per reading, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="bad-rates: runs of each")
    parser.add_argument("--outages", type=int, default=10)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--pause", type=float, default=10.0, help="catchup: seconds between outages")
    parser.add_argument("--rate", type=float, default=10.0, help="catchup: readings per second")
    args = parser.parse_args(argv)
    if args.gateway_dir:
        harness.set_gateway_dir(args.gateway_dir)
    emoncms = Emoncms(args.url, Path(args.apikey_file).read_text().strip())
    if args.scenario == "backlog":
        result = backlog(args, emoncms, args.nodes, args.readings)
    elif args.scenario == "bad-rows":
        clean = backlog(args, emoncms, min(args.nodes, 32), args.readings)
        dirty = backlog(args, emoncms, min(args.nodes, 32), args.readings, bad_every=args.every,
                        unnamed=args.unnamed)
        result = {"clean": clean, "with_bad": dirty,
                  "time_ratio": round(dirty["drain_s"] / clean["drain_s"], 2),
                  "rows_ratio": dirty["rows_per_reading"]}
    elif args.scenario == "bad-rates":
        result = bad_rates(args, emoncms)
    elif args.scenario == "accumulator":
        result = accumulator(args, emoncms)
    else:
        result = catchup(args, emoncms)
    result["gateway"] = str(harness.DAEMON.parent)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
