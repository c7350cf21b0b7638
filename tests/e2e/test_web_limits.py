"""The web page under attack: parallel password guessing, slow and oversized requests.

Each test runs the daemon with the page on and attacks it over real sockets, as an attacker
on the network would; a good client must keep being served.
"""

import collections
import json
import socket
import threading

import pytest

from gateway.web.auth import hash_password
from tests.support.daemon import WAIT, free_port
from tests.support.raw_http import answer_code, login_request, parallel_logins
from tests.support.web_client import PASSWORD, Browser, web_config

SLOW_HASH = hash_password(PASSWORD)   # the default cost: a check takes long enough to race


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.fixture
def page(gateway_factory, emoncms):
    port, web_port = free_port(), free_port()
    gw = gateway_factory(web_config(emoncms, port, web_port, password_hash=SLOW_HASH))
    gw.wait_for_log(rf"web page on http://127.0.0.1:{web_port}/")
    return gw, web_port


def test_parallel_wrong_passwords_get_no_more_checks_than_the_limit(page):
    """200 wrong passwords at once: the limit (5 a minute) holds, however they interleave."""
    gw, web_port = page
    codes = parallel_logins(web_port, 200)
    checked = codes.count(401)
    print(f"200 parallel wrong passwords: {checked} checked, {codes.count(429)} refused (429), "
          f"{codes.count(0)} closed unanswered, {codes.count(503)} busy (503)")
    assert checked <= 5
    assert checked + codes.count(429) + codes.count(503) + codes.count(0) == 200
    assert Browser(web_port).login()[0] == 429   # the right password too: the limit is on the address


def test_a_good_client_is_served_through_a_slow_header_flood(page):
    """300 connections trickling endless headers a byte at a time, reconnecting when closed:
    a good client still logs in and reads the status; the daemon's threads stay few."""
    gw, web_port = page
    pid = gw.proc.pid
    threads_before = threads_of(pid)
    stop = threading.Event()
    flood = []
    opened = [0]

    def trickle():
        header = b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
        for _ in range(300):
            flood.append([socket.create_connection(("127.0.0.1", web_port), timeout=WAIT), 0])
            opened[0] += 1
        while not stop.is_set():
            for entry in flood:
                try:
                    entry[0].send(header[entry[1]:entry[1] + 1])
                    entry[1] += 1
                except OSError:   # closed by the server: come back, as an attacker would
                    entry[0].close()
                    try:
                        entry[:] = [socket.create_connection(("127.0.0.1", web_port), timeout=WAIT), 0]
                        opened[0] += 1
                    except OSError:
                        pass
            stop.wait(0.02)   # pacing of the attack, not synchronisation

    attacker = threading.Thread(target=trickle)
    attacker.start()
    try:
        while opened[0] < 300:   # the whole flood is connected before the good client comes
            stop.wait(0.01)
        threads_during = threads_of(pid)
        browser = Browser(web_port)
        code, _ = browser.login()
        assert code == 200
        code, status = browser.json("GET", "/api/status")
        assert code == 200 and "tcp" in status["listeners"]
        threads_during = max(threads_during, threads_of(pid))
    finally:
        stop.set()
        attacker.join()
        for sock, _ in flood:
            sock.close()
    print(f"slow-header flood: threads {threads_before} before, {threads_during} during; "
          f"{opened[0]} connections opened")
    assert threads_during <= threads_before + 8


def test_oversized_bodies_are_refused_before_they_are_read(page):
    """A login announcing 1 MB, or a logged-in save announcing more than a config can be: 413
    at once, while the body has not even been sent."""
    gw, web_port = page
    with socket.create_connection(("127.0.0.1", web_port), timeout=WAIT) as sock:
        sock.sendall(login_request("x", length=1_000_000, body=False))
        assert answer_code(sock) == 413
    browser = Browser(web_port)
    assert browser.login()[0] == 200
    for length, expected in ((600 * 1024, 413), (64 * 1024, None)):
        with socket.create_connection(("127.0.0.1", web_port), timeout=WAIT) as sock:
            sock.sendall(b"POST /api/config/check HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n"
                         b"X-CSRF-Token: %s\r\nContent-Length: %d\r\n\r\n"
                         % (browser.cookie.encode(), browser.csrf.encode(), length))
            if expected:
                assert answer_code(sock) == expected
            else:   # a size a config can have: read and answered
                sock.sendall(json.dumps({"text": "#" * (length - 20)}).encode().ljust(length))
                assert answer_code(sock) in (200, 422)
    # without a session, the small limit applies to every path
    with socket.create_connection(("127.0.0.1", web_port), timeout=WAIT) as sock:
        sock.sendall(b"POST /api/config HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n")
        assert answer_code(sock) == 413


def test_big_bodies_from_many_clients_do_not_fill_the_memory(page):
    """150 unauthenticated logins each sending a 1 MB body: each is refused (413) without its
    body being read, and a good client still logs in (the RSS is printed for the notes)."""
    gw, web_port = page
    pid = gw.proc.pid
    before = rss_kb(pid)
    body = b"{" + b" " * (1_000_000 - 2) + b"}"
    codes, socks = [], []
    for _ in range(150):
        sock = socket.create_connection(("127.0.0.1", web_port), timeout=WAIT)
        socks.append(sock)
        sock.sendall(login_request("", length=len(body), body=False))
    senders = []
    for sock in socks:
        def push(s=sock):
            try:
                s.sendall(body)
            except OSError:
                pass   # refused and closed before the whole body went: what we want
        senders.append(threading.Thread(target=push))
        senders[-1].start()
    for sock in socks:
        codes.append(answer_code(sock))
    for t in senders:
        t.join()
    after = rss_kb(pid)
    for sock in socks:
        sock.close()
    print(f"150 x 1 MB login bodies: RSS {before / 1024:.1f} MB before, {after / 1024:.1f} MB after; "
          f"answers {collections.Counter(codes)}")
    # 413, or a reset when the refused client kept sending: never read, never checked (401)
    assert set(codes) <= {413, 0} and 413 in codes
    assert Browser(web_port).login()[0] == 200
