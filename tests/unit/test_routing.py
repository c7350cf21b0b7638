"""Routing: a buffer may take only some listeners and/or nodes (``from_listeners``,
``from_nodes``); by default every buffer takes everything. Rules that match nothing are warned
about when the config is read."""

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigLoader
from gateway.frame import Frame
from gateway.nodes import NodeDecoder, NodeTable
from gateway.routing import Router
from listeners import LISTENERS
from tests.support.daemon import free_port


def frame(node, source="tcp"):
    return Frame(node, (1,), 1.0, None, None, source)


def test_every_buffer_takes_everything_by_default():
    router = Router()
    router.configure({"a": {}, "b": {"from_listeners": [], "from_nodes": []}})
    assert router.skipped(frame(10)) == frozenset()


def test_a_buffer_takes_only_its_listeners_and_nodes():
    table, _, _ = NodeTable.from_config({"17": {"nodename": "emonTx4_17"}})
    decoder = NodeDecoder(table)
    router = Router(decoder.node_id)
    router.configure({"radio_only": {"from_listeners": ["radio"]}, "node17": {"from_nodes": ["17"]},
                      "both": {"from_listeners": ["radio"], "from_nodes": ["emonTx4_17"]}, "all": {}})
    assert router.skipped(frame("emonTx4_17", "radio")) == frozenset()   # 17 by its id and its name
    assert router.skipped(frame("emonTx4_17", "tcp")) == {"radio_only", "both"}
    assert router.skipped(frame(5, "radio")) == {"node17", "both"}


def load(tmp_path, text):
    path = tmp_path / "oemgateway.conf"
    path.write_text(text)
    return ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC).load(str(path))


CONFIG = """
[listeners]
[[tcp]]
type = socket
port = {port}
[buffers]
[[file]]
type = file
path = out.txt
{rule}
[nodes]
[[17]]
nodename = emonTx4_17
"""


def test_a_rule_that_matches_nothing_is_a_warning_at_its_line(tmp_path):
    config = load(tmp_path, CONFIG.format(port=free_port(), rule="from_listeners = serial\nfrom_nodes = emontx"))
    listeners = next(w for w in config.warnings if "from_listeners" in w)
    nodes = next(w for w in config.warnings if "from_nodes" in w)
    assert "oemgateway.conf:10: [buffers] [[file]] from_listeners: serial: no listener of that name in the " \
           "config (listeners: tcp); this buffer receives nothing" in listeners
    assert "oemgateway.conf:11: [buffers] [[file]] from_nodes: emontx: no [nodes] section or listener gives a " \
           "node that name" in nodes


def test_rules_that_can_match_raise_no_warning(tmp_path):
    config = load(tmp_path, CONFIG.format(port=free_port(), rule="from_listeners = tcp\nfrom_nodes = 17, emonTx4_17, 5"))
    assert not [w for w in config.warnings if "from_" in w]


# -- the spool keeps what is routed away out of a buffer's queue, across a restart -------------
def test_readings_not_for_a_buffer_are_never_in_its_queue_even_after_a_crash():
    from tests.unit.test_spool import Harness, accounting_ok, reading
    h = Harness()
    h.start("all", "odd")
    for i in range(20):   # "odd" takes only odd readings, and is behind: nothing delivered yet
        h.spool.append(reading(i, h.clock), frozenset() if i % 2 else frozenset({"odd"}))
    h.spool.flush()
    assert len(h.cursors["odd"]) == 10 and h.cursors["odd"].stats.accepted == 10
    assert len(h.cursors["all"]) == 20
    h.crash()
    h.start("all", "odd")
    assert h.deliver("odd") == list(range(1, 20, 2))
    assert h.deliver("all") == list(range(20))
    assert all(accounting_ok(cursor) for cursor in h.cursors.values())
