"""A fast emoncms-compatible sink for the side-by-side benchmark (``bench/side_by_side.py``).

    python -m bench.sink --frames N [--per-frame 8] [--link-kbps K]

It answers ``input/post`` and ``input/bulk`` as emoncms does (``ok``; ``{"success": true}``
with ``fulljson``) in one write, as Apache does, reads form bodies (``data=...``) and
``cb=1`` zlib bodies, and checks what it stores: frame *seq* of a node carries the values
``seq*per_frame ..`` (``bench.harness.frame_line``), so a frame lost, doubled or out of order
is seen. Unlike the fake emoncms of the tests it does not model PHP: it is the ceiling a
gateway is measured against, not a model of emoncms' behaviour.

Protocol on stdin/stdout (JSON lines): it prints ``{"port": P}`` when listening; ``reset``
forgets what it stored (after a warm-up); ``wait [N [S]]`` prints the figures once N frames
(default: ``--frames``) are stored, or after S seconds. ``--link-kbps`` reads request bodies no faster than that many kbit/s, as a slow
uplink would carry them.
"""

import argparse
import json
import socket
import sys
import threading
import time
import urllib.parse
import zlib


class Store:
    """Frames stored, checked against the sequence each node sends."""

    def __init__(self, frames: int, per_frame: int):
        self.frames_wanted = frames
        self.per_frame = per_frame
        self.lock = threading.Condition()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.next_seq = {}
            self.frames = self.lost = self.doubled = self.out_of_order = 0
            self.requests = self.body_bytes = 0
            self.first_arrival = self.last_arrival = None

    def store(self, firsts, body_bytes: int) -> None:
        """``firsts``: (node, first value) of each frame of one request, in order."""
        now = time.monotonic()
        with self.lock:
            self.requests += 1
            self.body_bytes += body_bytes
            if self.first_arrival is None:
                self.first_arrival = now
            self.last_arrival = now
            for node, value in firsts:
                seq = int(value) // self.per_frame
                expected = self.next_seq.get(node, 0)
                if seq == expected:
                    self.next_seq[node] = seq + 1
                elif seq < expected:
                    self.doubled += 1
                    continue
                else:
                    self.lost += seq - expected
                    self.out_of_order += 1
                    self.next_seq[node] = seq + 1
                self.frames += 1
            self.lock.notify_all()

    def wait_for(self, frames: int, timeout: float) -> None:
        with self.lock:
            self.lock.wait_for(lambda: self.frames >= frames, timeout)

    def figures(self) -> dict:
        with self.lock:
            return {"frames": self.frames, "lost": self.lost, "doubled": self.doubled,
                    "out_of_order": self.out_of_order, "requests": self.requests,
                    "body_bytes": self.body_bytes, "first_arrival": self.first_arrival,
                    "last_arrival": self.last_arrival}


def _first_value(row):
    """(node, first value) of a bulk row ``[time, node, v1, ...]`` or ``[time, node, {..}]``."""
    first = row[2]
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return str(row[1]), first


def answer(target: bytes, headers: dict, body: bytes, store: Store) -> bytes:
    path, _, query = target.decode("latin-1").partition("?")
    params = dict(urllib.parse.parse_qsl(query))
    if "cb" in params:
        data = zlib.decompress(body).decode()
    else:
        if headers.get(b"content-type", b"").startswith(b"application/x-www-form-urlencoded"):
            params.update(urllib.parse.parse_qsl(body.decode("latin-1")))
        data = params.get("data")
    if path.endswith("/input/bulk") or path.endswith("/input/bulk.json"):
        rows = json.loads(data)
        store.store([_first_value(row) for row in rows], len(body))
        return b'{"success": true}' if "fulljson" in params else b"ok"
    if path.endswith("/input/post") or path.endswith("/input/post.json"):
        values = json.loads(params["fulljson"])
        store.store([(params["node"], next(iter(values.values())))], len(body))
        return b'{"success": true}'
    return b'{"success": false, "message": "unknown request"}'


def serve_connection(conn: socket.socket, store: Store, link_bytes_per_s: float) -> None:
    """HTTP/1.1 keep-alive: read a request (Content-Length bodies), answer it in one write."""
    try:
        _serve(conn, store, link_bytes_per_s)
    except OSError:
        pass   # the client went away (its gateway was killed at the end of a run)
    finally:
        conn.close()


def _serve(conn: socket.socket, store: Store, link_bytes_per_s: float) -> None:
    buf = b""
    if True:
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            target = lines[0].split(b" ")[1]
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                headers[key.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            started = time.monotonic()
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            if link_bytes_per_s:
                # the body arrives no sooner than the link carries it (head included)
                delay = started + (len(head) + length) / link_bytes_per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            reply = answer(target, headers, body, store)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(reply), reply))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--per-frame", type=int, default=8)
    parser.add_argument("--link-kbps", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    store = Store(args.frames, args.per_frame)
    listener = socket.create_server(("127.0.0.1", args.port))
    link = args.link_kbps * 125.0

    def accept():
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=serve_connection, args=(conn, store, link), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command == ["reset"]:
            store.reset()
            print(json.dumps({"reset": True}), flush=True)
        elif command and command[0] == "wait":
            store.wait_for(int(command[1]) if len(command) > 1 else store.frames_wanted,
                           float(command[2]) if len(command) > 2 else 3600.0)
            print(json.dumps(store.figures()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
