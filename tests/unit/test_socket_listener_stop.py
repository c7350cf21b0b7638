"""Stopping the socket listener: lines its clients had already sent are read, not thrown away."""
import socket
import threading

from gateway.eventloop import EventLoop
from tests.support.configs import load
from tests.support.daemon import WAIT, free_port


def test_lines_sent_before_the_stop_are_read_at_the_stop(tmp_path):
    """The stop comes before the loop has read what a client sent: every whole line waiting in
    the kernel is still a reading (a half line is not: the client had not finished it)."""
    port = free_port()
    plugin = load(tmp_path, f"""
    [listeners]
    [[s]]
    type = socket
    port = {port}
    [buffers]
    """).listeners["s"]
    frames, first = [], threading.Event()

    def emit(frame):
        frames.append(frame)
        first.set()

    loop = EventLoop()
    listener = plugin.cls(plugin.name, plugin.settings, loop, emit)
    listener.open()
    running = threading.Thread(target=loop.run, daemon=True)
    running.start()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
        client.sendall(b"5 -1 1\n")
        assert first.wait(WAIT), "the first line was never read"
        loop.stop()                      # the loop reads nothing more: the stop comes first
        running.join(WAIT)
        client.sendall(b"".join(b"5 %d 1\n" % i for i in range(300)) + b"5 300")
        listener.close()
    loop.close()
    assert [frame.values[0] for frame in frames] == [-1] + list(range(300))
