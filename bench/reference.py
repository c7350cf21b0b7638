"""A minimal reference gateway: what a gateway with no guarantees costs.

    python -m bench.reference --port P --url URL --apikey KEY [--batch 500]

It reads ``node v1 v2 ...`` lines from TCP connections, batches them and posts them to an
emoncms ``input/bulk`` over one kept-alive connection. No spool (a reading lives in a list in
memory until it is posted), no decoding (a line becomes a bulk row by text substitution), no
checks, no accounting, no retries beyond sending the same batch again. It prints ``ready`` when
it listens. ``bench/side_by_side.py`` measures it beside the gateway through the same sink.
"""

import argparse
import http.client
import socket
import sys
import threading
import time
import urllib.parse


class Pending:
    """Lines received and not yet posted."""

    def __init__(self):
        self.lines = []
        self.cond = threading.Condition()

    def add(self, lines) -> None:
        with self.cond:
            self.lines.extend(lines)
            self.cond.notify()

    def take(self, most: int):
        with self.cond:
            self.cond.wait_for(lambda: self.lines)
            batch, self.lines = self.lines[:most], self.lines[most:]
            return batch


def read_connection(conn: socket.socket, pending: Pending) -> None:
    rest = b""
    with conn:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            pending.add([line for line in lines if line.strip()])


def post_forever(url: str, apikey: str, batch_size: int, pending: Pending) -> None:
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/input/bulk"
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Authorization": "Bearer " + apikey}
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
    while True:
        batch = pending.take(batch_size)
        now = int(time.time())
        rows = ",".join("[%d,%s]" % (now, line.decode().strip().replace(" ", ",")) for line in batch)
        body = urllib.parse.urlencode({"data": "[" + rows + "]", "time": "0"})
        while True:
            try:
                conn.request("POST", path, body, headers)
                reply = conn.getresponse()
                reply.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                time.sleep(0.1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--apikey", required=True)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    pending = Pending()
    listener = socket.create_server(("127.0.0.1", args.port))
    threading.Thread(target=post_forever, args=(args.url, args.apikey, args.batch, pending),
                     daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=read_connection, args=(conn, pending), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
