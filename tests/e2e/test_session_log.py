"""The log of a whole session, read as its user reads it: every line at INFO and above is a
sentence about their gateway, never a developer's trace."""

import os
import re
import textwrap

from tests.support.daemon import WAIT, free_port, rewrite_config, send_lines
from tests.support.emoncms_server import WRITE_KEY

# What a line written for a developer looks like: Python's own text, the libraries' raw errors.
DEVELOPER_TEXT = [
    (r"Traceback \(most recent call last\)|^\s+File \"", "a traceback"),
    (r"<[\w.]+ object at 0x[0-9a-f]+>|<(function|bound method|class) ", "an object's repr"),
    (r"\b[A-Z]\w*(Error|Exception)\(|\b\w+(Error|Exception): ", "an exception's class and repr"),
    (r"\[Errno -?\d+\]|Errno \d+", "an errno as Python prints it"),
    (r"Max retries exceeded|Caused by|HTTP(S)?Connection(Pool)?\(|NewConnectionError|urllib3", "urllib3's own text"),
    (r"[\[{(]'[^']*'(, '[^']*')*[\]})]|\{'\w+': ", "a Python list, tuple or dict"),
    (r"\bb'[^']*'|\bb\"", "a Python bytes repr"),
    (r"\b1 (readings|listeners|buffers|frames|lines|values|names|nodes|connections|problems|files)\b",
     "a plural after 1"),
    (r"\b(None|True|False)\b(?! \()|: null\b", "a Python constant where a word belongs"),
]


def developer_lines(log: str):
    """The INFO-and-above lines of ``log`` that read like a developer's tool, with why."""
    found = []
    for line in log.splitlines():
        level = re.match(r"\S+ \S+ (INFO|WARNING|ERROR|CRITICAL) ", line)
        if not level and not line.startswith(("  ", "\t")):
            continue   # DEBUG, or not a log line
        for pattern, what in DEVELOPER_TEXT:
            if re.search(pattern, line):
                found.append((what, line))
    return found


def test_the_check_recognises_what_the_gateway_used_to_write():
    """The lines this check exists for, as earlier versions wrote them, are caught."""
    old = [
        "2026-05-01 10:00:00,000 WARNING oemgateway.buffer.emoncms: buffer 'emoncms': delivery failed: "
        "cannot reach http://127.0.0.1:9/emoncms/input/post: \"HTTPConnection(host='127.0.0.1', port=9): "
        "Failed to establish a new connection: [Errno 111] Connection refused\" (1 readings queued)",
        "2026-05-01 10:00:00,000 INFO oemgateway: stopped (1 readings kept for the next start)",
        "2026-05-01 10:00:00,000 ERROR oemgateway.eventloop: internal error in <function f at 0x7f00aa>",
        "2026-05-01 10:00:00,000 WARNING oemgateway: [gateway] log_levels: 'x' is not component=LEVEL: "
        "['a', 'b']",
    ]
    assert len({line for _, line in developer_lines("\n".join(old))}) == len(old)


def test_a_whole_session_reads_as_sentences(gateway_factory, emoncms):
    """Start, frames (one of them bad), an outage, a broken edit, the removal of a destination
    holding readings, the stop: the log a user reads, at the default level."""
    port = free_port()
    text = textwrap.dedent(f"""
        [gateway]
        config_check_interval = 0.2
        shutdown_timeout = 0.5
        [listeners]
        [[socket]]
        type = socket
        port = {port}
        [buffers]
        [[file]]
        type = file
        [[emoncms]]
        type = emoncms
        url = {emoncms.url}
        apikey = {WRITE_KEY}
        retry_max = 0.2
        [nodes]
        [[10]]
        nodename = emontx
        names = power1, vrms
        scales = 1, 0.1
        """)
    gw = gateway_factory(text)
    send_lines(port, b"\xff\xfe 1 2\n10 230 241.5\n10 abc\n")   # (the second bad line: in the summary)
    assert [row.value for row in emoncms.wait_for_rows(2)] == [230, 24.15]
    gw.wait_for_log(r"dropped bad input \(not UTF-8 line\): \\xff\\xfe 1 2")
    emoncms.set_mode("refuse")
    send_lines(port, b"10 231 241.6\n")
    gw.wait_for_log("delivery failed")
    emoncms.set_mode("ok")
    gw.wait_for_log("delivering again after")
    rewrite_config(gw.config_path, text.replace("[[socket]]", "[[socket]"))
    gw.wait_for_log("not applied")
    emoncms.set_mode("refuse")
    send_lines(port, b"10 232 241.7\n")
    gw.wait_for_log("delivery failed", count=2)
    rewrite_config(gw.config_path, text.split("[[emoncms]]")[0] + "[nodes]" + text.split("[nodes]")[1])
    gw.wait_for_log("dropped: the buffer was removed from the config")
    assert gw.stop() == 0
    log = gw.log
    print(log)
    lines = [re.sub(r"^\S+ \S+ ", "", line) for line in log.splitlines()]
    url_port = emoncms.url.split(":")[2].split("/")[0]
    for expected in [
        f"INFO oemgateway.listener.socket: listener 'socket': listening on 127.0.0.1:{port}",
        "INFO oemgateway: ready: 1 listener, 2 buffers",
        f"WARNING oemgateway.buffer.emoncms: buffer 'emoncms': delivery failed: cannot connect to "
        f"127.0.0.1:{url_port}: connection refused (1 reading queued; retrying with backoff)",
        "WARNING oemgateway.spool: buffer 'emoncms': 1 reading dropped: the buffer was removed from the config",
        "INFO oemgateway: stopped",
    ]:
        assert expected in lines, expected
    assert any(re.fullmatch(r"INFO oemgateway: buffer 'emoncms' removed from the config: it has 0.5 s "
                            r"\(shutdown_timeout\) to deliver its 1 queued reading; what is left then is "
                            r"dropped", line) for line in lines), log
    assert not [line for line in lines if "emoncms" in line and "kept" in line]
    assert developer_lines(log) == []


class PlainEmoncms:
    """An emoncms behind a server that sends no Content-Type: requests then guesses the
    encoding of every reply with charset_normalizer, which logs as it goes."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        posted = self.posted = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b'{"success": true}' if self.path.endswith("input/post") else b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                posted.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_at_debug_the_libraries_stay_quiet_unless_asked_for(gateway_factory):
    """DEBUG shows the gateway's own details, not a library's lines for every HTTP reply (the
    HTTP buffers use the standard library's client, which logs nothing); log_levels may still
    name a library's logger."""
    from tests.support.configs import socket_emoncms_config
    server = PlainEmoncms()
    try:
        for name, extra in (("first.conf", ""), ("second.conf", "log_levels = urllib3=DEBUG")):
            port = free_port()
            gw = gateway_factory(socket_emoncms_config(port, server.url, gateway=extra), name=name)
            send_lines(port, b"1 1\n")
            assert server.posted.wait(WAIT)
            server.posted.clear()
            assert gw.stop() == 0
            assert " DEBUG oemgateway" in gw.log
            assert "is not part=LEVEL" not in gw.log   # accepted, no problem reported
            assert re.findall(r" (?:DEBUG|INFO) (charset_normalizer|urllib3|requests)\S*: ", gw.log) == []
    finally:
        server.close()


def test_the_spool_recommends_a_tmpfs_this_machine_has_never_the_folder_it_warns_about(tmp_path, caplog):
    """(Earlier it said "set runtime_dir to a tmpfs such as /run/oemgateway" about a folder in
    /run on a machine whose /run is no tmpfs.)"""
    import logging
    import shutil

    from gateway.spool import build_spool, filesystem_type
    from tests.support.daemon import ROOT
    folder = tmp_path if filesystem_type(str(tmp_path)) not in ("tmpfs", "ramfs") else ROOT / ".spool-test"
    try:
        gateway = {"durability": "process", "runtime_dir": str(folder / "run"), "state_dir": str(folder / "state"),
                   "hot_max_mb": 16, "max_disk_mb": 64, "max_age": 30, "spill_after": 60, "spill_interval": 60,
                   "power_sync_interval": 5}
        for sub in ("run", "state"):
            (folder / sub).mkdir(mode=0o700, parents=True)
        with caplog.at_level(logging.INFO, logger="oemgateway.spool"):
            build_spool(gateway).close()
        [warning] = [r.getMessage() for r in caplog.records if "not tmpfs" in r.getMessage()]
        advice = warning.split("flash writes (", 1)[1]
        if "e.g. " in advice:
            recommended = advice.split("e.g. ", 1)[1].rstrip(")")
            assert filesystem_type(os.path.dirname(recommended)) in ("tmpfs", "ramfs"), warning
            assert not recommended.startswith(str(folder)), warning
        else:
            assert "this machine has no tmpfs" in advice
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder, ignore_errors=True)
