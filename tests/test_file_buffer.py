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


# -- the file buffer on its own: what it opens, appends to and renames ------------------------
def file_buffer(path, **settings):
    from buffers.file import FileBuffer
    from buffers.spool import BufferStats, Spool, SpoolSettings
    from buffers.storage import MemoryFiles
    spool = Spool(MemoryFiles(), None, SpoolSettings())
    spool.open()
    base = {"active": True, "max_items": 0, "batch_size": 500, "retry_max": 1.0,
            "path": str(path), "max_bytes": 0, "backups": 5}
    return FileBuffer("csv", dict(base, **settings), spool.register("csv", BufferStats()))


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
    rows = [line.split(",")[2] for name in ("out.csv", "out.csv.1") if (tmp_path / name).exists()
            for line in (tmp_path / name).read_text().splitlines()[1:]]
    assert sorted(rows) == ["2", "3", "4"]                # each once, none lost
    assert "cannot rotate" in caplog.text
