"""The file buffer, and the shipped config running with no server at all."""

import csv
import time

from tests.conftest import ROOT, free_port, send_lines


def test_shipped_config_runs_without_any_server_and_writes_csv(gateway_factory):
    port = free_port()
    text = (ROOT / "oemgateway.conf").read_text().replace("port = 50011", f"port = {port}")
    text = text.replace("loglevel = INFO", "loglevel = DEBUG")  # to see when the frames were read
    gw = gateway_factory(text)
    assert "buffer 'emoncms': inactive: no apikey set" in gw.log
    before = time.time()
    send_lines(port, b"14 15 26\r\n10 1.5 -2\nemontx 230.1 0 7\n")
    gw.wait_for_log("connection closed by the client")
    assert gw.stop() == 0
    files = list((gw.config_path.parent / "readings").glob("*.csv"))
    assert [f.name for f in files] == [time.strftime("%Y-%m-%d.csv")]
    rows = list(csv.reader(files[0].open()))
    assert rows[0] == ["time", "node", "values"]
    assert [r[1:] for r in rows[1:]] == [["14", "15", "26"], ["10", "1.5", "-2"],
                                         ["emontx", "230.1", "0", "7"]]
    assert all(before - 0.001 <= float(r[0]) <= time.time() for r in rows[1:])  # ms precision
    assert "readings could not be delivered" not in gw.log


def test_size_rotation_keeps_backups(gateway_factory):
    port = free_port()
    gw = gateway_factory(f"""
    [gateway]
    loglevel = DEBUG
    [listeners]
    [[tcp]]
    type = socket
    port = {port}
    [buffers]
    [[file]]
    type = file
    path = out.csv
    max_bytes = 200
    backups = 2
    batch_size = 1
    """)
    send_lines(port, b"".join(b"%d 1234567890\n" % (i % 10) for i in range(40)))
    gw.wait_for_log("connection closed by the client")
    assert gw.stop() == 0
    folder = gw.config_path.parent
    names = sorted(p.name for p in folder.glob("out.csv*"))
    assert names == ["out.csv", "out.csv.1", "out.csv.2"], gw.log
    for name in names:
        assert (folder / name).read_text().startswith("time,node,values\n")
        assert (folder / name).stat().st_size <= 200 + 40
