"""The web page under attack: what a flood costs the daemon (threads, memory) and whether a
good client is still served.

    python -m bench.web_flood                      # this work tree
    python -m bench.web_flood --gateway-dir DIR    # another copy (e.g. a git archive of main)

Three attacks on a daemon with the page on (the default PBKDF2 cost), one after the other:

- race: 200 connections send a wrong password at the same moment; how many were checked
  (answered 401) against the limit of 5 a minute;
- slow headers: 300 connections trickle an endless header a byte at a time (reconnecting
  when closed) for ``--seconds``; the daemon's threads and RSS, and a good client's login and
  status read (its time);
- big bodies: 150 logins announce and send 1 MB bodies at once; RSS now and peak (VmHWM)
  against before.
"""

import argparse
import base64
import hashlib
import json
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench import harness
from tests.support.raw_http import answer_code, login_request, parallel_logins

PASSWORD = "bench password"


def _config(folder: Path, web_port: int) -> Path:
    """A daemon with only the page on; the password hashed as ``--hash-password`` does (any
    gateway version can read it)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 200_000)
    password_hash = "$".join(("pbkdf2_sha256", "200000", base64.b64encode(salt).decode(),
                              base64.b64encode(digest).decode()))
    path = folder / "oemgateway.conf"
    path.write_text(f"[gateway]\n    loglevel = INFO\n    durability = none\n    web_port = {web_port}\n"
                    f"    web_password_hash = {password_hash}\n[listeners]\n[buffers]\n")
    return path


def _status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {"threads": int(fields["Threads"]), "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024}


def _login(port: int, password: str, announce: int = None, body: bool = True) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(login_request(password, announce, body))
    return sock


def race(port: int) -> dict:
    codes = parallel_logins(port, 200)
    return {"checked": codes.count(401), "refused_429": codes.count(429), "closed": codes.count(0)}


def slow_headers(port: int, pid: int, seconds: float) -> dict:
    stop, connected, flood = threading.Event(), threading.Event(), []
    worst = {"threads": 0, "rss_mb": 0.0}
    header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000_000

    def trickle():
        for _ in range(300):
            flood.append([socket.create_connection(("127.0.0.1", port), timeout=30), 0])
        connected.set()
        while not stop.is_set():
            for entry in flood:
                try:
                    entry[0].send(header[entry[1]:entry[1] + 1])
                    entry[1] += 1
                except OSError:
                    entry[0].close()
                    try:
                        entry[:] = [socket.create_connection(("127.0.0.1", port), timeout=30), 0]
                    except OSError:
                        pass
            stop.wait(0.05)

    attacker = threading.Thread(target=trickle)
    attacker.start()
    connected.wait(60)
    end = time.monotonic() + seconds
    good = []
    while time.monotonic() < end:
        now = _status(pid)
        worst = {k: max(worst[k], now[k]) for k in worst}
        started = time.monotonic()
        sock = _login(port, PASSWORD)
        code = answer_code(sock)
        sock.close()
        good.append((code, time.monotonic() - started))
        stop.wait(1.0)
    stop.set()
    attacker.join()
    for sock, _ in flood:
        sock.close()
    return {"max_threads": worst["threads"], "max_rss_mb": round(worst["rss_mb"], 1),
            "good_logins_ok": sum(c == 200 for c, _ in good), "good_logins": len(good),
            "good_login_max_s": round(max(t for _, t in good), 2)}


def big_bodies(port: int, pid: int) -> dict:
    before = _status(pid)
    body = b"{" + b" " * (1_000_000 - 2) + b"}"
    socks = [_login(port, "", announce=len(body), body=False) for _ in range(150)]

    def push(sock):
        try:
            sock.sendall(body)
        except OSError:
            pass

    senders = [threading.Thread(target=push, args=(s,)) for s in socks]
    for t in senders:
        t.start()
    codes = [answer_code(s) for s in socks]
    for t in senders:
        t.join()
    after = _status(pid)
    for s in socks:
        s.close()
    return {"rss_before_mb": round(before["rss_mb"], 1), "rss_after_mb": round(after["rss_mb"], 1),
            "peak_rss_before_mb": round(before["peak_rss_mb"], 1),
            "peak_rss_after_mb": round(after["peak_rss_mb"], 1), "answers": {
                str(c): codes.count(c) for c in sorted(set(codes))}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway-dir", help="measure the oemgateway.py in this folder")
    parser.add_argument("--seconds", type=float, default=10, help="length of the slow-header flood")
    args = parser.parse_args(argv)
    if args.gateway_dir:
        harness.set_gateway_dir(args.gateway_dir)
    results = {}
    for attack in ("race", "slow_headers", "big_bodies"):
        with tempfile.TemporaryDirectory(prefix="web-flood-") as folder:
            port = harness.free_port()
            daemon = harness.Daemon(_config(Path(folder), port), state_dir=folder)
            try:
                daemon.wait_ready()
                idle = _status(daemon.pid)
                if attack == "race":
                    results[attack] = race(port)
                elif attack == "slow_headers":
                    results[attack] = dict(slow_headers(port, daemon.pid, args.seconds),
                                           idle_threads=idle["threads"], idle_rss_mb=round(idle["rss_mb"], 1))
                else:
                    results[attack] = big_bodies(port, daemon.pid)
            finally:
                daemon.kill()
        print(attack, json.dumps(results[attack]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
