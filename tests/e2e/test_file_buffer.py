"""The file buffer, and the shipped config running with no server at all."""

import csv
import time
from datetime import datetime

from tests.support.daemon import free_port, send_lines, shipped_config


def test_shipped_config_runs_without_any_server_and_writes_csv(gateway_factory):
    port = free_port()
    text = shipped_config().replace("port = 50011", f"port = {port}")
    text = text.replace("loglevel = INFO", "loglevel = DEBUG")  # to see when the frames were read
    gw = gateway_factory(text)
    assert "buffer 'emoncms': inactive: no apikey set" in gw.log
    before = time.time()
    send_lines(port, b"14 15 26\r\n10 1.5 -2\nemontx 230.1 0 7\n")
    gw.wait_for_log("connection closed by the client")
    assert gw.stop() == 0
    files = {f.name: list(csv.reader(f.open())) for f in (gw.config_path.parent / "readings").glob("*.csv")}
    for name, rows in files.items():   # one file per node and local day of its reading
        assert name == f"{rows[1][2]}-{datetime.fromtimestamp(float(rows[1][0])):%Y-%m-%d}.csv"
    files = {rows[1][2]: rows for rows in files.values()}
    assert sorted(files) == ["10", "14", "emontx"]
    assert files["14"][0] == ["time", "local_time", "node", "1", "2"]
    assert files["emontx"][0] == ["time", "local_time", "node", "1", "2", "3"]
    assert [row[2:] for _, rows in sorted(files.items()) for row in rows[1:]] == \
        [["10", "1.5", "-2"], ["14", "15", "26"], ["emontx", "230.1", "0", "7"]]
    for rows in files.values():
        epoch, local = float(rows[1][0]), rows[1][1]
        assert before - 0.001 <= epoch <= time.time()   # ms precision
        assert local == datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S")   # ISO 8601, local
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
    send_lines(port, b"".join(b"%d 1234567890\n" % (i % 10) for i in range(42)))
    gw.wait_for_log("connection closed by the client")
    assert gw.stop() == 0
    folder = gw.config_path.parent
    names = sorted(p.name for p in folder.glob("out.csv*"))
    assert names == ["out.csv", "out.csv.1", "out.csv.2"], gw.log
    for name in names:
        assert (folder / name).read_text().startswith("time,local_time,node,values\n")
        assert (folder / name).stat().st_size <= 200 + 40


# -- the file buffer on its own: what it opens, appends to and renames ------------------------
def file_buffer(path, **settings):
    from buffers.file import FileBuffer
    base = {"active": True, "max_items": 0, "batch_size": 500, "retry_max": 1.0,
            "path": str(path), "max_bytes": 0, "backups": 5}
    return FileBuffer("csv", dict(base, **settings))


def frames(*values):
    from gateway.frame import Frame
    return [Frame("10", (v,), 1700000000.0 + i, None, None, "test") for i, v in enumerate(values)]


def test_a_symlink_or_a_fifo_at_the_path_is_never_written_through(tmp_path):
    import os
    import threading

    import pytest

    from buffers.base import TransientError
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "link.csv").symlink_to(victim)
    with pytest.raises(TransientError, match="link.csv: is a symbolic link: not followed"):
        file_buffer(tmp_path / "link.csv").send(frames(1))
    assert victim.read_text() == "precious\n"
    os.mkfifo(tmp_path / "fifo.csv")
    errors = []

    def send():
        try:
            file_buffer(tmp_path / "fifo.csv").send(frames(1))
        except TransientError as exc:
            errors.append(str(exc))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(30)   # an open() that follows a FIFO would wait here for a reader forever
    assert not sender.is_alive() and "fifo.csv: not a regular file" in errors[0]


def test_rotation_moves_only_its_own_file_and_a_failed_rotation_loses_and_repeats_nothing(tmp_path, caplog):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.2").symlink_to(victim)          # a planted backup name
    buffer = file_buffer(out, max_bytes=30, backups=2)
    buffer.send(frames(1))                               # out.csv -> out.csv.1
    buffer.send(frames(2))                               # out.csv.1 -> .2 replaces the link itself
    assert victim.read_text() == "precious\n" and not (tmp_path / "out.csv.2").is_symlink()
    (tmp_path / "out.csv.2").unlink()
    (tmp_path / "out.csv.2").mkdir()                     # a backup name that cannot be replaced
    buffer.send(frames(3))
    buffer.send(frames(4))                               # no exception: the rows are written
    rows = [line.split(",")[3] for name in ("out.csv", "out.csv.1") if (tmp_path / name).exists()
            for line in (tmp_path / name).read_text().splitlines()[1:]]
    assert sorted(rows) == ["2", "3", "4"]                # each once, none lost
    assert "cannot rotate" in caplog.text


def test_a_reading_just_before_a_second_boundary_shows_the_same_second_in_both_time_columns(tmp_path):
    """``time`` is to the millisecond; ``local_time`` must be that same moment, also when
    rounding to the millisecond carries into the next second (and the next day's file)."""
    import time as clock

    from gateway.frame import Frame
    midnight = clock.mktime((2026, 5, 2, 0, 0, 0, 0, 0, -1))
    file_buffer(tmp_path / "%Y-%m-%d.csv").send([Frame("10", (1,), midnight - 0.0004, None, None, "test")])
    assert [p.name for p in tmp_path.iterdir()] == ["2026-05-02.csv"]
    epoch, local = (tmp_path / "2026-05-02.csv").read_text().splitlines()[1].split(",")[:2]
    assert float(epoch) == midnight and local == "2026-05-02T00:00:00"


def named(node, names, *rows, start=1700000000.0):
    from gateway.frame import Frame
    return [Frame(node, tuple(values), start + i, tuple(names), None, "test") for i, values in enumerate(rows)]


def test_a_file_per_node_names_its_columns_and_never_changes_them(tmp_path):
    """A spreadsheet opens each node's file with named columns. When the node's inputs change
    (a [nodes] edit, a firmware sending one more value), its rows go on in a new file with its
    own header, and back in the first when they change back; a restart finds the same files."""
    pattern = tmp_path / "{node}-%Y.csv"
    year = time.strftime("%Y", time.localtime(1700000000))
    buffer = file_buffer(pattern)
    buffer.send(named("emontx", ("power1", "vrms"), (230, 241.2)) + named(5, ("1",), (7,)))
    buffer.send(named("emontx", ("power1", "vrms", "temp"), (231, 241.3, 19.5)))
    buffer.send(named("emontx", ("power1", "vrms"), (232, 241.4)))
    file_buffer(pattern).send(named("emontx", ("power1", "vrms", "temp"), (233, 241.5, 19.6)))
    read = {p.name: list(csv.reader(p.open())) for p in tmp_path.glob("*.csv")}
    assert read[f"emontx-{year}.csv"] == [
        ["time", "local_time", "node", "power1", "vrms"],
        ["1700000000.000", datetime.fromtimestamp(1700000000).isoformat(), "emontx", "230", "241.2"],
        ["1700000000.000", datetime.fromtimestamp(1700000000).isoformat(), "emontx", "232", "241.4"]]
    assert [row[3:] for row in read[f"emontx-{year}_2.csv"]] == [
        ["power1", "vrms", "temp"], ["231", "241.3", "19.5"], ["233", "241.5", "19.6"]]
    assert read[f"5-{year}.csv"][0] == ["time", "local_time", "node", "1"]
    assert len(read) == 3


def test_a_file_of_every_node_has_one_header_and_an_older_layout_is_left_as_it_is(tmp_path):
    out = tmp_path / "all.csv"
    out.write_text("time,node,values\n1600000000.000,10,1,2\n")   # written before local_time existed
    buffer = file_buffer(out)
    buffer.send(named("emontx", ("power1", "vrms"), (230, 241.2)) + named(10, ("1", "2"), (1, 2)))
    assert out.read_text() == "time,node,values\n1600000000.000,10,1,2\n"
    lines = (tmp_path / "all_2.csv").read_text().splitlines()
    assert lines[0] == "time,local_time,node,values"
    assert [line.split(",")[2:] for line in lines[1:]] == [["emontx", "230", "241.2"], ["10", "1", "2"]]
