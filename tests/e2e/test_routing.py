"""Routing end to end: buffers that take only some nodes, behind one listener."""

from tests.support.daemon import free_port, send_lines


def test_routing_end_to_end(gateway_factory):
    """Two file buffers behind one socket listener: one takes node 17 (by its name) only, one
    everything; a reading not for a buffer is neither counted nor queued there."""
    port = free_port()
    gateway = gateway_factory(f"""
    [gateway]
    loglevel = DEBUG
    clock = trusted
    [listeners]
    [[tcp]]
    type = socket
    port = {port}
    [buffers]
    [[only17]]
    type = file
    path = only17/{{node}}.csv
    from_nodes = emonTx4_17
    [[all]]
    type = file
    path = all/{{node}}.csv
    [nodes]
    [[17]]
    nodename = emonTx4_17
    """)
    send_lines(port, b"17 1 2\n5 3 4\n17 5 6\n")
    gateway.wait_for_log("connection closed by the client")
    assert gateway.stop() == 0
    folder = gateway.config_path.parent
    assert sorted(p.name for p in (folder / "all").iterdir()) == ["5.csv", "emonTx4_17.csv"]
    assert sorted(p.name for p in (folder / "only17").iterdir()) == ["emonTx4_17.csv"]
    assert len((folder / "only17" / "emonTx4_17.csv").read_text().splitlines()) == 3   # header + 2
    assert "buffer 'only17': accepted 2 = delivered 2 + queued 0 + dropped 0" in gateway.log
    assert "buffer 'all': accepted 3 = delivered 3 + queued 0 + dropped 0" in gateway.log
