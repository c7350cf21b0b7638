"""A destination's send(), tested as a plugin author would: constructed with its settings and
called with a list of frames, with no daemon, no spool and no sender thread. The example output
(``tests/support/outputs.py``) against a real TCP socket; the webhook buffer against the test webhook."""

import socket
import textwrap
import threading

import pytest

from buffers import BUFFERS
from buffers.base import AuthError, RejectedError, TransientError
from gateway.config import ConfigLoader
from gateway.frame import Frame
from gateway.registry import Registry
from gateway.spool import SPOOL_SPEC
from listeners import LISTENERS
from tests.support.daemon import free_port
from tests.support.outputs import GraphiteBuffer
from tests.support.webhook_server import TOKEN, FakeWebhook

OUTPUTS = Registry("buffer", {"graphite": "tests.support.outputs:GraphiteBuffer"})


def settings(tmp_path, registry, type_name, **keys):
    """A buffer's settings as the gateway gives them: the config's keys checked, defaults added."""
    path = tmp_path / "gw.conf"
    lines = "\n".join(f"{key} = {value}" for key, value in keys.items())
    path.write_text(f"[gateway]\ndurability = none\n[buffers]\n[[out]]\ntype = {type_name}\n{lines}\n")
    return ConfigLoader(LISTENERS, registry, SPOOL_SPEC).load(str(path)).buffers["out"].settings


@pytest.fixture
def graphite(tmp_path):
    return settings(tmp_path, OUTPUTS, "graphite", host="127.0.0.1", prefix="emon.", timeout=5)


class PlaintextReceiver:
    """A TCP server that keeps what each connection sent, and closes it after reading it all."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.received.append(data.decode("ascii"))

    def close(self):
        self.sock.close()


def frame(node, values, names=None, t=1700000000.5):
    return Frame(node, tuple(values), t, names, None, "test")


def test_the_example_output_sends_each_value_as_a_plaintext_line(graphite):
    receiver = PlaintextReceiver()
    try:
        output = GraphiteBuffer("graphite", dict(graphite, port=receiver.port))
        output.send([frame("emontx", (230, 241.5), ("power1", "vrms")), frame(5, (7,))])
        assert receiver.received == ["emon.emontx.power1 230 1700000000\nemon.emontx.vrms 241.5 1700000000\n"
                                     "emon.5.1 7 1700000000\n"]
    finally:
        receiver.close()


def test_the_example_output_says_what_it_cannot_send_and_when_to_try_again(graphite):
    output = GraphiteBuffer("graphite", dict(graphite, port=free_port()))   # nobody listens
    with pytest.raises(TransientError, match="Connection refused"):
        output.send([frame(5, (7,))])
    assert output.check(frame(5, (float("inf"),))) == "Graphite takes finite numbers only"
    with pytest.raises(RejectedError, match="not ASCII"):
        output.send([frame(5, (7,), ("température",))])
    assert GraphiteBuffer("graphite", dict(graphite, host="")).inactive_reason() == "no host set"


def test_a_registry_entry_is_all_the_config_needs_to_know_a_new_output(tmp_path):
    path = tmp_path / "gw.conf"
    path.write_text(textwrap.dedent("""
        [gateway]
        durability = none
        [buffers]
        [[metrics]]
        type = graphite
        host = graphite.example
        """))
    config = ConfigLoader(LISTENERS, OUTPUTS, SPOOL_SPEC).load(str(path))
    plugin = config.buffers["metrics"]
    assert plugin.cls is GraphiteBuffer
    assert (plugin.settings["host"], plugin.settings["port"], plugin.settings["batch_size"]) == \
        ("graphite.example", 2003, 500)


def test_the_webhook_buffer_posts_a_batch_and_reports_the_receivers_answers(tmp_path):
    def webhook(url, token=TOKEN):
        return BUFFERS.resolve("webhook")("hook", settings(tmp_path, BUFFERS, "webhook", url=url, timeout=5,
                                                           headers=f'"Authorization: Bearer {token}"'))

    with FakeWebhook(refuse_value=999) as server:
        webhook(server.hook_url).send([frame("emontx", (230, 241.5), ("power1", "vrms")), frame(5, (7,))])
        readings = server.wait_for_readings(2)
        assert [(r.node, r.time, r.values) for r in readings] == [
            ("emontx", 1700000000.5, {"power1": 230, "vrms": 241.5}), (5, 1700000000.5, {"1": 7})]
        with pytest.raises(RejectedError, match="not plausible"):
            webhook(server.hook_url).send([frame(5, (999,))])
        with pytest.raises(AuthError):
            webhook(server.hook_url, token="wrong").send([frame(5, (1,))])
        server.fail_next(1, 503)
        with pytest.raises(TransientError):
            webhook(server.hook_url).send([frame(5, (1,))])
        assert len(server.readings) == 2   # nothing of the refused requests was stored
