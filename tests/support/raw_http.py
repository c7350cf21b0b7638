"""HTTP spoken byte by byte over plain sockets, as an attacker (or a careless client) does:
requests whose headers lie about their bodies, and reading just the status of the answer."""

import json
import socket
import threading
from typing import List, Optional

from tests.support.proclog import WAIT


def login_request(password: str, length: Optional[int] = None, body: bool = True) -> bytes:
    """A POST /api/login; ``length`` announces another body size, ``body`` False leaves it out."""
    payload = json.dumps({"password": password}).encode()
    head = (b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(payload) if length is None else length))
    return head + (payload if body else b"")


def answer_code(sock: socket.socket, timeout: float = WAIT) -> int:
    """The status code of the HTTP answer on ``sock`` (0 if the server closed it unanswered)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return int(data.split()[1]) if data.startswith(b"HTTP/") else 0


def parallel_logins(port: int, count: int) -> List[int]:
    """``count`` connections each send a different wrong password at the same moment; the
    answers' status codes (0: closed unanswered)."""
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
        except OSError:
            pass
    barrier = threading.Barrier(len(socks))
    codes = [0] * count

    def guess(i: int) -> None:
        with socks[i]:
            try:
                barrier.wait(WAIT)
                socks[i].sendall(login_request(f"wrong guess {i}"))
            except (OSError, threading.BrokenBarrierError):
                return
            codes[i] = answer_code(socks[i])

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(socks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def closed_by_server(sock) -> bool:
    """Block until the server closes the connection (EOF or reset)."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True
