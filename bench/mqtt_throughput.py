"""How many readings per second the MQTT buffer delivers at QoS 1 to a local Mosquitto.

Not a test: a measurement. It starts a broker on a free port, the daemon with a socket listener
and one MQTT buffer, and a subscriber; sends ``--readings`` frames over TCP on one connection,
and times from the first byte sent until the subscriber has seen every reading::

    python -m bench.mqtt_throughput                   # 20,000 readings, json format
    python -m bench.mqtt_throughput --formats nodevar --values 4 --max-inflight 20
    python -m bench.mqtt_throughput --ha-discovery --nodes 50 --values 10   # Home Assistant on

With ``--ha-discovery`` the Home Assistant states (the latest value per input, on the nodevar
topics) and the discovery configs come on top; the readings counted are the JSON (and CSV)
messages, and the discovery messages the gateway published are counted and reported.
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import threading
import tempfile
import textwrap
import time
from pathlib import Path

from tests.support.configs import socket_config
from tests.support.daemon import GatewayProcess, free_port, runtime_dir_for
from tests.support.mosquitto import Broker, Subscriber, find_program


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=20000)
    parser.add_argument("--values", type=int, default=3, help="values per reading")
    parser.add_argument("--formats", default="json")
    parser.add_argument("--max-inflight", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--qos", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=1, help="readings go round-robin over this many nodes")
    parser.add_argument("--ha-discovery", action="store_true", help="ha_discovery = True")
    parser.add_argument("--subscriber", choices=("paho", "mosquitto_sub"), default="paho",
                        help="who counts the messages: a paho client in this process, or the "
                             "C mosquitto_sub (so the gateway, not the counter, is the limit)")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="mqtt-throughput-"))
    try:
        with Broker(folder / "broker") as broker:
            subscriber = Subscriber(broker.port, ["emon/#", "emonhub/#", "homeassistant/#"])
            port = free_port()
            config = folder / "oemgateway.conf"
            config.write_text(textwrap.dedent(socket_config(port, f"""
            [[mqtt]]
            type = mqtt
            host = 127.0.0.1
            port = {broker.port}
            qos = {args.qos}
            formats = {args.formats}
            max_inflight = {args.max_inflight}
            batch_size = {args.batch_size}
            ha_discovery = {args.ha_discovery}
            """, gateway="clock = trusted", loglevel="INFO")))
            gateway = GatewayProcess(config).wait_ready()
            try:
                # One reading first: the connection is open before the clock starts.
                _send(port, b"1 0" + b" 1" * (args.values - 1) + b"\n")
                formats = [f.strip() for f in args.formats.split(",")]
                if args.ha_discovery:   # the nodevar topics are Home Assistant's: not counted
                    formats = [f for f in formats if f != "nodevar"]
                per_reading = sum(args.values if f == "nodevar" else 1 for f in formats)
                subscriber.wait(lambda m: sum(1 for x in m if _counted(x.topic, formats)) >= per_reading,
                                "the first reading")
                nodes = [2 + n for n in range(args.nodes)]
                data = "".join(f"{nodes[i % len(nodes)]} {i}" + " 1" * (args.values - 1) + "\n"
                               for i in range(args.readings)).encode()
                expected = per_reading * args.readings
                counter = (_MosquittoSub(broker.port, expected, subscriber, formats)
                           if args.subscriber == "mosquitto_sub" else None)
                before = sum(1 for x in subscriber.messages if _counted(x.topic, formats))
                started = time.perf_counter()
                _send(port, data)
                if counter is not None:
                    counter.wait()
                else:
                    subscriber.wait(lambda m: sum(1 for x in m if _counted(x.topic, formats)) >= before + expected,
                                    f"{expected} messages", timeout=600)
                elapsed = time.perf_counter() - started
                subscriber.sync()
            finally:
                gateway.stop()
            subscriber.close()
        last = [m for m in subscriber.messages if m.topic == f"emon/{nodes[(args.readings - 1) % len(nodes)]}"]
        if last and args.formats.startswith("json"):
            assert json.loads(last[-1].payload)["1"] == args.readings - 1
        discovery = [m for m in subscriber.messages if m.topic.startswith("homeassistant/")]
        states = [m for m in subscriber.messages if m.topic.count("/") == 2 and m.topic.startswith("emon/")
                  and not m.topic.startswith("emon/gateway")]
        print(f"{args.readings} readings ({args.values} values, {args.nodes} nodes, formats {args.formats}, "
              f"{per_reading} messages each, QoS {args.qos}, max_inflight {args.max_inflight}, "
              f"batch_size {args.batch_size}, ha_discovery {args.ha_discovery}, counted by "
              f"{args.subscriber}) in {elapsed:.2f} s: "
              f"{args.readings / elapsed:,.0f} readings/s, {expected / elapsed:,.0f} messages/s")
        if args.ha_discovery:
            print(f"Home Assistant: {len(discovery)} discovery messages "
                  f"({len({m.topic for m in discovery})} config topics) and {len(states)} state "
                  f"messages for {args.readings + 1} readings")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(runtime_dir_for(folder), ignore_errors=True)
    return 0


class _MosquittoSub:
    """``mosquitto_sub -v`` counting the messages it prints until it has ``count``.

    It is ready once it prints the retained ``bench/ready`` message, which the broker sends
    right after accepting its subscriptions.
    """

    def __init__(self, port: int, count: int, publisher: Subscriber, formats):
        self.count = count
        self.seen = 0
        publisher.publish("bench/ready", "1", retain=True)
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", find_program("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(port),
             "-q", "1", "-v", "-t", "bench/ready",
             *(["-t", "emon/+"] if "json" in formats else []),
             *(["-t", "emon/+/+"] if "nodevar" in formats else []),
             *(["-t", "emonhub/rx/+/values"] if "csv" in formats else [])],
            stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if line.startswith("bench/ready"):
                break

    def wait(self, timeout: float = 600) -> None:
        done = threading.Event()

        def count():
            for _ in self.proc.stdout:
                self.seen += 1
                if self.seen >= self.count:
                    break
            done.set()

        threading.Thread(target=count, daemon=True).start()
        try:
            if not done.wait(timeout) or self.seen < self.count:
                raise AssertionError(f"mosquitto_sub saw {self.seen} of {self.count} messages")
        finally:
            self.proc.kill()
            self.proc.wait()


def _counted(topic: str, formats) -> bool:
    """A message of a reading in the formats counted (not the status, not Home Assistant's)."""
    levels = topic.split("/")
    if levels[0] == "emon" and levels[1] != "gateway":
        return ("json" in formats and len(levels) == 2) or ("nodevar" in formats and len(levels) == 3)
    return "csv" in formats and levels[0] == "emonhub" and levels[1] == "rx"


def _send(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)


if __name__ == "__main__":
    sys.exit(main())
