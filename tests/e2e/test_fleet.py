"""Fleets: three gateways with different site names publish through one central Mosquitto (per-
site users and ACLs, persistence on), and a consumer with a persistent session receives every
reading of every site exactly as each gateway recorded it, through a broker restart and a
consumer restart (tests/support/fleet.py, the recipe of docs/fleet.md)."""

from tests.support import fleet
from tests.support.daemon import GatewayProcess, free_port, send_lines
from tests.support.mosquitto import Subscriber


def test_every_reading_of_every_site_reaches_the_central_consumer_exactly_as_sent(tmp_path):
    result = fleet.run(tmp_path, per_phase=100)
    assert result == {site: {"sent": 300, "recorded": 300, "delivered": 300, "duplicates": result[site]["duplicates"],
                             "missing": 0, "altered": 0}
                      for site in ("site-a", "site-b", "site-c")}


def test_a_site_cannot_publish_under_another_sites_name(tmp_path):
    """The ACL of docs/fleet.md: site-b's credentials with site = site-a are refused."""
    broker = fleet.central_broker(tmp_path / "broker", ["site-a", "site-b"]).start()
    try:
        watcher = Subscriber(broker.port, ["+/emon/+"], username=fleet.CONSUMER,
                             password="consumer-secret")
        folder = tmp_path / "impostor"
        folder.mkdir()
        config = fleet.gateway_config("site-b", broker.port, free_port()).replace(
            "site = site-b", "site = site-a")
        (folder / "oemgateway.conf").write_text(config)
        gateway = GatewayProcess(folder / "oemgateway.conf").wait_ready()
        port = int(config.split("port = ")[1].split()[0])
        send_lines(port, b"emontx 1 2\n")
        gateway.wait_for_log("buffer 'central': connected to")   # by the reading's batch
        assert gateway.stop() == 0   # a clean stop delivers what is queued first
        gateway.wait_for_log(r"buffer 'central'.*accepted 1 = delivered 1")   # the broker took it ...
        watcher.sync()
        assert [m for m in watcher.messages if m.topic.startswith("site-a/")] == []   # ... and dropped it
        watcher.close()
    finally:
        broker.stop()
