"""Who may feed the gateway, what it does under a flood, and that secrets never leak."""

import os
import re
import socket
import subprocess
import sys
import textwrap

from tests.support.configs import socket_emoncms_config
from tests.support.daemon import DAEMON, WAIT, free_port, send_lines
from tests.support.emoncms_server import WRITE_KEY
from tests.support.raw_http import closed_by_server


def config(port, url, listener_extra="", gateway_extra=""):
    return socket_emoncms_config(port, url, "clock = trusted\n    " + gateway_extra, listener_extra,
                                 buffer="timeout = 0.5")


def test_allow_list_refuses_other_addresses(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, "allow = 10.0.0.0/8, 192.168.1.7"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"1 1\n")
        assert closed_by_server(s)
    gw.wait_for_log(r"refused a connection from 127\.0\.0\.1:\d+ \(not in 'allow'\)")
    # the same config with our network allowed: frames arrive
    text = config(port, emoncms.url, "allow = 10.0.0.0/8, 127.0.0.0/8")
    gw.config_path.write_text(text)
    gw.signal(__import__("signal").SIGHUP)
    gw.wait_for_log("re-read")
    send_lines(port, b"2 2\n")
    assert [r.node for r in emoncms.wait_for_rows(1)] == ["2"]


def test_bad_allow_entry_is_a_config_error(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text("[listeners]\n[[s]]\ntype = socket\nallow = 10.0.0.0/33\n")
    result = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(conf), "--check"],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 1
    assert "[listeners] [[s]]: allow: '10.0.0.0/33' is not an address or network" in result.stderr


def test_token_must_be_the_first_line(gateway_factory, emoncms):
    port = free_port()
    token = "s3cret-token-123"
    gw = gateway_factory(config(port, emoncms.url, f"token = {token}"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"wrong\n1 1\n")
        assert closed_by_server(s)
    send_lines(port, token.encode() + b"\n2 2\n")
    rows = emoncms.wait_for_rows(1)
    assert [r.node for r in rows] == ["2"]
    assert "its first line was not the token" in gw.log
    assert token not in gw.log


def test_idle_clients_are_closed(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, "idle_timeout = 0.3"))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        assert closed_by_server(s)
    gw.wait_for_log("no complete line for 0.3 s")


def test_a_connection_flood_never_stops_a_good_client(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url, "max_clients = 50"))
    good = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    flood = []
    try:
        good.sendall(b"3 -1\n")     # a client that talks keeps its place; silent ones make room
        emoncms.wait_for_rows(1)
        for _ in range(1000):
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
            except OSError:
                break   # the machine's own limits: the flood is big enough
        for i in range(20):
            good.sendall(b"3 %d\n" % i)
        rows = emoncms.wait_for_rows(21)
        assert [int(r.value) for r in rows] == list(range(-1, 20))
    finally:
        for s in flood:
            s.close()
        good.close()
    assert len(flood) >= 500
    gw.wait_for_log("the 'max_clients'")
    assert gw.proc.poll() is None


def test_a_flood_of_bad_frames_gives_a_handful_of_log_lines(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url))
    send_lines(port, b"not a frame\n" * 10000 + b"4 4\n")
    emoncms.wait_for_rows(1)
    assert gw.stop() == 0
    lines = [l for l in gw.log.splitlines() if "bad input" in l]
    assert len(lines) == 2, lines
    assert "9999 more like that" in lines[1]


def test_readable_config_with_secrets_is_warned_about(gateway_factory, emoncms):
    port = free_port()
    gw = gateway_factory(config(port, emoncms.url), wait_ready=False)
    gw.wait_ready()
    os.chmod(gw.config_path, 0o644)
    gw.stop()
    gw2 = gateway_factory(config(port, emoncms.url), name="other.conf", wait_ready=False)
    os.chmod(gw2.config_path, 0o644)
    gw2.wait_ready()
    assert "holds secrets and every user of this machine can read it" in gw2.log


# Secrets in every form the config can hold them, each a distinct byte string to look for.
WRONG_KEY = "a" * 32
TOKEN = "listener-token-xyz"
HOOK_USER, HOOK_PASS = "hookuser7", "hook-url-pass-4711"
BEARER = "webhook-bearer-token-99"
INFLUX_USER, INFLUX_PASS = "influxuser3", "influx-url-pass-58"
INFLUX_TOKEN = "influx-token-value-77"
MQTT_LINES = ("mqtt-pass-line-one", "mqtt-pass-line-two")
TYPO_KEY = "typo-type-apikey-6502"
MALFORMED = "malformed-line-secret-8086"
FTP_PASS = "ftp-url-pass-2718"


def full_config(port, status_port, web_port, emoncms, password_hash, apikey=WRITE_KEY):
    """Every buffer type, each holding a secret, those with URLs holding credentials in them."""
    host_port = emoncms.url.split("//", 1)[1].split("/", 1)[0]
    gateway = "\n".join(("clock = trusted", f"status_port = {status_port}", f"web_port = {web_port}",
                         f"web_password_hash = {password_hash}"))
    return textwrap.dedent(socket_emoncms_config(port, emoncms.url, gateway, f"token = {TOKEN}",
                                                 "timeout = 0.5", apikey)) + f"""
[[hook]]
type = webhook
url = http://{HOOK_USER}:{HOOK_PASS}@127.0.0.1:{free_port()}/hook
headers = "Authorization: Bearer {BEARER}"
retry_max = 0.2
[[influx]]
type = influxdb
url = http://{INFLUX_USER}:{INFLUX_PASS}@{host_port}/influx
token = {INFLUX_TOKEN}
org = home
bucket = energy
retry_max = 0.2
[[mqtt]]
type = mqtt
host = 127.0.0.1
port = {free_port()}
username = gateway
password = \'\'\'{MQTT_LINES[0]}
{MQTT_LINES[1]}\'\'\'
retry_max = 0.2
"""


BROKEN_PARTS = (f"[[typo]]\ntype = emoncmss\napikey = {TYPO_KEY}\n"
                f"[[ftp]]\ntype = webhook\nurl = ftp://someone:{FTP_PASS}@example.org/x\n")


def test_no_secret_in_any_output_of_a_whole_session(gateway_factory, emoncms):
    """A whole session at DEBUG with secrets planted in every form (plugin keys, URL
    credentials, a header, a triple-quoted value, a section whose type is misspelled, a line
    that does not parse, the web password and its hash): wrong key, server errors, a reload,
    a broken config, /status, /metrics, the web page's status, config and checks,
    ``--show-settings`` and ``--check``. Not one byte of any output holds a secret."""
    import json
    import signal
    import urllib.request
    from gateway.web.auth import hash_password
    from tests.support.web_client import PASSWORD, Browser
    port, status_port, web_port = free_port(), free_port(), free_port()
    password_hash = hash_password(PASSWORD, iterations=1000)
    good = full_config(port, status_port, web_port, emoncms, password_hash)
    gw = gateway_factory(full_config(port, status_port, web_port, emoncms, password_hash, WRONG_KEY))
    outputs = []

    def read(path, base=f"http://127.0.0.1:{status_port}"):
        outputs.append(urllib.request.urlopen(base + path, timeout=WAIT).read().decode())

    def run(*args, path=None):
        done = subprocess.run([sys.executable, str(DAEMON), "--config-file", str(path or gw.config_path), *args],
                              capture_output=True, text=True, timeout=WAIT)
        outputs.append(done.stdout + done.stderr)
        return done

    send_lines(port, TOKEN.encode() + b"\n1 1\nbad\n")
    gw.wait_for_log("refused the API key")
    gw.wait_for_log(r"buffer 'hook': delivery failed")
    gw.wait_for_log(r"buffer 'influx': .*404")
    read("/status")
    read("/metrics")
    browser = Browser(web_port)
    assert browser.login()[0] == 200
    for path in ("/api/status", "/api/config"):
        outputs.append(json.dumps(browser.json("GET", path)))

    gw.config_path.write_text(textwrap.dedent(good))   # the right key now
    gw.signal(signal.SIGHUP)
    emoncms.wait_for_rows(1)
    for mode in ("error500", "garbage", "reset", "hang"):
        emoncms.fail_next(1, mode)
        send_lines(port, TOKEN.encode() + b"\n2 2\n")
    emoncms.wait_until(lambda rows: sum(r.node == "2" for r in rows) >= 4, what="four frames")
    read("/status")
    read("/metrics")

    # the page's checks of texts with problems that name or hold secrets
    text = browser.json("GET", "/api/config")[1]["text"]
    for bad in (text + BROKEN_PARTS, text + f"apikey: {MALFORMED}\n"):
        code, answer = browser.json("POST", "/api/config/check", {"text": bad})
        assert code == 422
        outputs.append(json.dumps(answer))
        code, answer = browser.json("POST", "/api/config", {"text": bad})
        assert code == 422
        outputs.append(json.dumps(answer))

    # the same problems in the file itself: a reload refused, the page's editor, --check
    for count, bad in enumerate((good + BROKEN_PARTS, good + f"apikey: {MALFORMED}\n"), 1):
        gw.config_path.write_text(textwrap.dedent(bad))
        gw.signal(signal.SIGHUP)
        gw.wait_for_log("not applied", count)
        outputs.append(json.dumps(browser.json("GET", "/api/config")))
        assert run("--check").returncode == 1
    gw.config_path.write_text(textwrap.dedent(good))
    gw.signal(signal.SIGHUP)
    gw.wait_for_log("re-read", 2)
    outputs.append(json.dumps(browser.json("GET", "/api/status")))
    assert run("--show-settings").returncode == 0 and run("--check").returncode == 0
    assert gw.stop() == 0

    everything = "\n".join(outputs) + gw.log
    assert "DEBUG" in gw.log and "effective settings" in everything and "web_password_hash" in everything
    assert "cannot connect to 127.0.0.1:" in outputs[0]       # /status shows the error, no URL credentials
    assert "password = ********" in everything and "emoncmss" in everything
    secrets = (WRITE_KEY, WRONG_KEY, TOKEN, HOOK_USER, HOOK_PASS, BEARER, INFLUX_USER, INFLUX_PASS,
               INFLUX_TOKEN, *MQTT_LINES, TYPO_KEY, MALFORMED, FTP_PASS, PASSWORD, password_hash,
               password_hash.split("$")[-1], password_hash.split("$")[-2])
    leaked = [secret for secret in secrets if secret.encode() in everything.encode()]
    assert not leaked, "leaked: " + ", ".join(leaked)
    assert not re.search(r"apikey=\w", everything)


def test_settings_problems_and_log_lines_mask_every_form_of_secret(tmp_path):
    """The pieces the session above relies on, one by one."""
    from buffers import BUFFERS
    from gateway.config import ConfigError, ConfigLoader
    from gateway.logs import Redactor
    from listeners import LISTENERS
    loader = ConfigLoader(LISTENERS, BUFFERS)
    conf = tmp_path / "c.conf"
    conf.write_text("[gateway]\nweb_password_hash = pbkdf2_sha256$1$c2FsdA==$aGFzaA==\n"
                    "[buffers]\n[[hook]]\ntype = webhook\nurl = http://me:p%40ss-word@h/x\n"
                    "api_secret = typo-of-a-key-1\n")
    config = loader.load(str(conf))
    shown = str(config.masked())
    for secret in ("aGFzaA==", "p%40ss-word", "me:", "typo-of-a-key-1"):
        assert secret not in shown
    assert "http://***@h/x" in shown
    assert {"pbkdf2_sha256$1$c2FsdA==$aGFzaA==", "p%40ss-word", "p@ss-word", "typo-of-a-key-1"} <= set(config.secrets())
    redactor = Redactor()
    redactor.set_secrets(config.secrets())
    assert redactor.redact("POST http://me:p@ss-word@h/x failed; again p@ss-word") == \
        "POST http://***@h/x failed; again ***"

    conf.write_text("[buffers]\n[[hook]]\ntype = webhook\nurl = ftp://me:ftp-pass-3@h/x\n"
                    "[[typo]]\ntype = emoncmss\napikey = typo-key-2\n")
    try:
        loader.load(str(conf))
    except ConfigError as exc:
        problems = "\n".join(exc.problems)
    assert "url = 'ftp://***@h/x': expected an http:// or https:// URL" in problems
    assert "ftp-pass-3" not in problems and "no buffer type 'emoncmss'; did you mean 'emoncms'?" in problems
    conf.write_text("[buffers]\n[[e]]\ntype = emoncms\napikey: loose-key-3\n")
    try:
        loader.load(str(conf))
    except ConfigError as exc:
        problems = "\n".join(exc.problems)
    assert problems.endswith("c.conf:4: 'apikey' uses ':' where '=' is expected: write name = value, "
                             "e.g. apikey = 0123...")
