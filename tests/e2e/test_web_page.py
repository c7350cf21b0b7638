"""The web page of the running daemon over HTTP: every endpoint, logins, CSRF, the config shown
and saved. (Passwords, sessions, login limits and the config editor in detail:
tests/unit/test_web.py.)"""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from gateway.web.auth import verify_password
from gateway.web.configedit import MASK
from tests.support.daemon import DAEMON, WAIT, free_port, send_lines
from tests.support.emoncms_server import WRITE_KEY
from tests.support.web_client import PASSWORD_HASH, Browser, web_config


@pytest.fixture
def web(gateway_factory, emoncms):
    port, web_port = free_port(), free_port()
    gw = gateway_factory(web_config(emoncms, port, web_port))
    gw.wait_for_log(rf"web page on http://127.0.0.1:{web_port}/")
    gw.port = port
    return gw, Browser(web_port)


def test_the_page_and_its_files_are_served_without_login(web):
    _, browser = web
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")):
        code, headers, body = browser.request("GET", path)
        assert code == 200 and headers["Content-Type"].startswith(kind) and body
        assert headers["X-Frame-Options"] == "DENY" and "default-src 'self'" in headers["Content-Security-Policy"]
    assert browser.request("GET", "/../oemgateway.conf")[0] == 404
    assert browser.request("GET", "/nothing.html")[0] == 404
    assert browser.json("GET", "/api/nothing")[0] == 404


def test_everything_else_needs_a_login(web):
    _, browser = web
    for method, path in (("GET", "/api/status"), ("GET", "/api/config"), ("GET", "/api/session"),
                         ("POST", "/api/config/check"), ("POST", "/api/config"), ("POST", "/api/config/section")):
        code, answer = browser.json(method, path, {} if method == "POST" else None)
        assert code == 401, path
    assert browser.login("wrong")[0] == 401
    code, headers = browser.login()
    assert code == 200
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert browser.json("GET", "/api/session") == (200, {"csrf": browser.csrf})
    assert browser.json("POST", "/api/logout")[0] == 200
    assert browser.json("GET", "/api/status")[0] == 401


def test_logins_are_rate_limited_and_failures_logged_throttled(web):
    gw, browser = web
    for _ in range(5):
        assert browser.login("wrong")[0] == 401
    for _ in range(20):
        code, _ = browser.login()
        assert code == 429
    assert gw.log.count("failed login from 127.0.0.1") == 1
    assert gw.stop() == 0   # the summary of what was held back comes at the latest at the end
    gw.wait_for_log(r"\.\.\. 24 more like that in the last 60 s \(latest: web page: login from "
                    r"127\.0\.0\.1 refused: too many failed logins\)")


def test_changes_need_the_csrf_token(web):
    _, browser = web
    browser.login()
    text = browser.json("GET", "/api/config")[1]["text"]
    assert browser.json("POST", "/api/config/check", {"text": text}, csrf=False)[0] == 403
    browser.csrf = "forged"
    assert browser.json("POST", "/api/config", {"text": text})[0] == 403
    assert browser.json("POST", "/api/config/section", {"section": ["nodes", "10"], "values": {}})[0] == 403


def test_bad_requests_are_refused(web):
    _, browser = web
    browser.login()
    code, _, _ = browser.request("POST", "/api/config/check", None)
    assert code == 200 or code == 422          # an empty body is an empty object
    request = urllib.request.Request(browser.base + "/api/login", data=b"[1, 2]", method="POST")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=WAIT)
    assert error.value.code == 400
    assert browser.json("POST", "/api/config/section", {"section": "nodes"})[0] == 400


def test_status_shows_listeners_buffers_nodes_with_values_and_the_log(web, emoncms):
    gw, browser = web
    browser.login()
    send_lines(gw.port, b"10 230 240\nbad line\n")
    emoncms.wait_for_rows(2)
    code, status = browser.json("GET", "/api/status")
    assert code == 200
    assert status["listeners"]["tcp"]["frames_good"] == 1 and status["listeners"]["tcp"]["frames_bad"] == 1
    assert status["buffers"]["emoncms"]["accepted"] == 1
    node = status["nodes"]["10"]
    assert node["nodename"] == "house" and node["values"] == {"power": 230, "voltage": 240}
    assert node["units"] == {"power": "W", "voltage": "V"}
    assert any("not a frame" in line["text"] or "bad" in line["text"] for line in status["log"]["problems"])
    assert status["log"]["recent"] and WRITE_KEY not in json.dumps(status)


def test_config_is_shown_masked_and_checked(web):
    gw, browser = web
    browser.login()
    code, config = browser.json("GET", "/api/config")
    assert code == 200 and config["path"] == str(gw.config_path)
    assert WRITE_KEY not in json.dumps(config) and PASSWORD_HASH not in json.dumps(config)
    assert f"apikey = {MASK}" in config["text"]
    assert config["sections"]["nodes"]["10"]["nodename"] == "house"
    assert browser.json("POST", "/api/config/check", {"text": config["text"]}) == (
        200, {"ok": True, "problems": [], "warnings": []})
    bad = config["text"].replace("retry_max = 0.2", "retry_max = soon")
    code, answer = browser.json("POST", "/api/config/check", {"text": bad})
    assert code == 422 and answer["problems"][0]["key"] == "retry_max"
    assert answer["problems"][0]["line"] == bad.splitlines().index("retry_max = soon") + 1


def test_saving_applies_the_config_live_and_keeps_the_secrets(web, emoncms):
    gw, browser = web
    browser.login()
    before = gw.config_path.read_text()
    text = browser.json("GET", "/api/config")[1]["text"]
    code, answer = browser.json("POST", "/api/config", {"text": text.replace("nodename = house", "nodename = home")})
    assert code == 200 and answer["ok"] and answer["applied"]
    gw.wait_for_log(r"re-read \(saved on the web page\)")
    assert gw.config_path.read_text() == before.replace("nodename = house", "nodename = home")
    [backup] = (gw.config_path.parent / "state" / "config-backups").iterdir()   # in the state folder
    assert backup.read_text() == before and not (gw.config_path.parent / "oemgateway.conf.bak").exists()
    send_lines(gw.port, b"10 1 2\n")
    assert emoncms.wait_for_rows(2)[-1].node == "home"


def test_a_refused_save_changes_nothing(web):
    gw, browser = web
    browser.login()
    before = gw.config_path.read_text()
    text = browser.json("GET", "/api/config")[1]["text"]
    code, answer = browser.json("POST", "/api/config", {"text": text.replace("\nport = ", "\nport = -")})
    assert code == 422 and not answer["ok"] and answer["problems"][0]["key"] == "port"
    assert gw.config_path.read_text() == before
    assert not (gw.config_path.parent / "state" / "config-backups").exists()


def test_the_node_form_edits_one_section_live(web, emoncms):
    gw, browser = web
    browser.login()
    code, answer = browser.json("POST", "/api/config/section",
                                {"section": ["nodes", "10"], "values": {"nodename": "flat", "names": "a, b"}})
    assert code == 200 and answer["applied"]
    gw.wait_for_log(r"re-read \(saved on the web page\)")
    send_lines(gw.port, b"10 1 2\n")
    rows = emoncms.wait_for_rows(2)
    assert {(r.node, r.name) for r in rows} == {("flat", "a"), ("flat", "b")}
    code, answer = browser.json("POST", "/api/config/section", {"section": ["nodes", "10"], "values": {"scales": "x"}})
    assert code == 422 and answer["problems"][0]["key"] == "scales"


def test_without_a_password_nobody_logs_in(gateway_factory, emoncms):
    web_port = free_port()
    gw = gateway_factory(web_config(emoncms, free_port(), web_port, password_hash=""))
    gw.wait_for_log("web_password_hash is not set")
    code, _ = Browser(web_port).login("")
    assert code == 403


def test_hash_password_command():
    result = subprocess.run([sys.executable, str(DAEMON), "--hash-password"], input="s3cret\n",
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0
    assert verify_password("s3cret", result.stdout.strip())
    empty = subprocess.run([sys.executable, str(DAEMON), "--hash-password"], input="\n",
                           capture_output=True, text=True, timeout=WAIT)
    assert empty.returncode == 1


def test_the_watch_answers_hold_history_states_in_words_and_the_file_version(web, emoncms):
    gw, browser = web
    browser.login()
    send_lines(gw.port, b"10 230.5 241\n")
    emoncms.wait_for_rows(2)
    code, status = browser.json("GET", "/api/status")
    assert code == 200 and status["buffers"]["emoncms"]["words"] == "delivering"
    assert len(status["config_version"]) == 16
    code, history = browser.json("GET", "/api/history?node=10&minutes=5")
    assert code == 200 and history["nodes"]["10"]["inputs"]["power"][-1] == 230.5
    assert len(history["nodes"]["10"]["inputs"]["power"]) == 5
    assert browser.json("GET", "/api/history?minutes=soon")[0] == 400
    code, forms = browser.json("GET", "/api/forms")
    assert code == 200 and {"emoncms", "mqtt", "file"} <= set(forms["buffers"]) and "socket" in forms["listeners"]


def test_a_save_based_on_an_older_version_gets_409_and_changes_nothing(web):
    gw, browser = web
    browser.login()
    version = browser.json("GET", "/api/config")[1]["version"]
    edited = gw.config_path.read_text() + "# edited on the machine\n"
    gw.config_path.write_text(edited)
    code, answer = browser.json("POST", "/api/config/section",
                                {"section": ["nodes", "10"], "values": {"nodename": "x"}, "version": version})
    assert code == 409 and answer["conflict"] and "changed after this page read it" in answer["error"]
    code, _ = browser.json("POST", "/api/config", {"text": "", "version": version})
    assert code == 409 and gw.config_path.read_text() == edited


def test_the_test_button_never_sends_a_kept_key_to_a_new_address(web, emoncms):
    gw, browser = web
    browser.login()
    code, answer = browser.json("POST", "/api/test", {"section": ["buffers", "emoncms"], "values": {}})
    assert code == 200 and answer["ok"], answer
    emoncms.wait_until(lambda rows: any(r.node == "oemgateway" for r in rows), what="the test reading")
    code, answer = browser.json("POST", "/api/test", {"section": ["buffers", "emoncms"],
                                                      "values": {"url": "http://127.0.0.1:9/elsewhere"}})
    assert code == 422 and answer["problems"][0]["key"] == "apikey"
    code, answer = browser.json("POST", "/api/test", {"section": ["buffers", "emoncms"], "values": {"apikey": "f" * 32}})
    assert code == 200 and not answer["ok"] and "API key" in answer["message"] and "f" * 32 not in json.dumps(answer)
    code, answer = browser.json("POST", "/api/config/section/check", {"section": ["listeners", "tcp"],
                                                                      "values": {"port": "0"}})
    assert code == 422 and answer["problems"][0]["key"] == "port"


def test_each_node_says_which_destinations_it_is_not_for(gateway_factory, emoncms):
    port, web_port = free_port(), free_port()
    routed = "[[only99]]\n    type = file\n    path = readings/{node}.csv\n    from_nodes = 99\n    [nodes]"
    gw = gateway_factory(web_config(emoncms, port, web_port).replace("[nodes]", routed, 1))
    gw.wait_for_log("web page on")
    browser = Browser(web_port)
    browser.login()
    send_lines(port, b"10 1 2\n99 3\n")
    emoncms.wait_for_rows(3)
    nodes = browser.json("GET", "/api/status")[1]["nodes"]
    assert nodes["10"]["not_for"] == ["only99"] and nodes["99"]["not_for"] == []


def test_a_listener_that_cannot_start_is_shown_with_why(gateway_factory, emoncms):
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken, web_port = holder.getsockname()[1], free_port()
    try:
        gw = gateway_factory(web_config(emoncms, taken, web_port))
        gw.wait_for_log("web page on")
        browser = Browser(web_port)
        browser.login()
        tcp = browser.json("GET", "/api/status")[1]["listeners"]["tcp"]
        assert tcp["state"] == "not running" and "in use" in tcp["error"]
    finally:
        holder.close()
