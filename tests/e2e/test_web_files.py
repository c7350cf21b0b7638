"""What the web page may make the gateway write or read: only files under its data folder (or
folders the config file itself lists in ``[gateway] file_roots``), never the config file or
the spool, never through a symlink. Each test goes through the page's API of a running daemon.
"""

import os

import pytest

from tests.support.daemon import free_port, send_lines
from tests.support.web_client import Browser, web_config


@pytest.fixture
def page(gateway_factory, emoncms, tmp_path):
    """The daemon with the page on and a logged-in browser; ``outside`` holds a precious file."""
    def start(gateway_lines="", buffer_lines=""):
        port, web_port = free_port(), free_port()
        text = web_config(emoncms, port, web_port).replace("[listeners]", gateway_lines + "\n    [listeners]")
        text = text.replace("[nodes]", buffer_lines + "\n    [nodes]")
        gw = gateway_factory(text)
        gw.wait_for_log("web page on")
        gw.port = port
        browser = Browser(web_port)
        assert browser.login()[0] == 200
        return gw, browser

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    start.outside = outside
    start.data = tmp_path / "state"   # the daemon's STATE_DIRECTORY (tests/support/daemon.py)
    return start


def add_section(browser, path, values):
    return browser.json("POST", "/api/config/section", {"section": path, "values": values})


def refused(answer, key):
    return not answer["ok"] and [p for p in answer["problems"] if p["key"] == key]


def test_a_file_buffer_cannot_be_pointed_outside_the_data_folder(page, emoncms):
    gw, browser = page()
    victim = page.outside / "victim.txt"
    code, answer = add_section(browser, ["buffers", "evil"],
                               {"type": "file", "path": str(victim), "max_bytes": "1"})
    assert code == 422 and refused(answer, "path"), answer
    assert "file_roots" in answer["problems"][0]["message"]
    text = browser.json("GET", "/api/config")[1]["text"]
    evil = text.replace("[nodes]", f"[[evil]]\ntype = file\npath = {victim}\n[nodes]")
    code, answer = browser.json("POST", "/api/config", {"text": evil})
    assert code == 422 and refused(answer, "path")
    send_lines(gw.port, b"10 1 2\n")
    emoncms.wait_for_rows(2)   # the frame went through the gateway
    assert victim.read_text() == "precious\n" and not os.path.exists(f"{victim}.1")


def test_paths_that_climb_out_are_refused_however_written(page):
    gw, browser = page()
    for path in (f"{page.data}/../outside/x.csv", f"{page.data}/%Y/../../outside/x.csv",
                 "outside/x.csv", "readings/%Y-%m-%d.csv", "~/x.csv"):   # relative: to the config's folder
        code, answer = add_section(browser, ["buffers", "csv"], {"type": "file", "path": path})
        assert code == 422 and refused(answer, "path"), (path, answer)


def test_a_file_buffer_in_the_data_folder_is_saved_and_writes(page):
    gw, browser = page()
    target = page.data / "readings" / "out.csv"
    code, answer = add_section(browser, ["buffers", "csv"], {"type": "file", "path": str(target)})
    assert code == 200 and answer["applied"], answer
    gw.wait_for_log(r"buffer 'csv' \(file\) started")
    send_lines(gw.port, b"10 1 2\n")
    gw.wait_for_log("connection closed by the client")
    assert gw.stop() == 0
    rows = target.read_text().splitlines()
    assert rows[0] == "time,local_time,node,values" and rows[1].endswith(",house,1,2")


def test_a_symlink_in_the_data_folder_does_not_lead_out(page):
    gw, browser = page()
    (page.data / "readings").mkdir(parents=True, exist_ok=True)
    link = page.data / "readings" / "link.csv"
    link.symlink_to(page.outside / "victim.txt")
    code, answer = add_section(browser, ["buffers", "evil"], {"type": "file", "path": str(link)})
    assert code == 422 and refused(answer, "path")
    (page.data / "out").symlink_to(page.outside)
    code, answer = add_section(browser, ["buffers", "evil"], {"type": "file", "path": str(page.data / "out" / "x.csv")})
    assert code == 422 and refused(answer, "path")


@pytest.mark.parametrize("section, values, key", [
    (["buffers", "emoncms"], {"ca_file": "/etc/passwd"}, "ca_file"),
    (["buffers", "broker"], {"type": "mqtt", "tls": "True", "certfile": "/etc/x.pem", "keyfile": "/etc/x.key"}, "keyfile"),
    (["gateway"], {"state_dir": "/tmp"}, "state_dir"),
    (["gateway"], {"runtime_dir": "/dev/shm"}, "runtime_dir"),
    (["listeners", "spy"], {"type": "serial", "com_port": "spy:///dev/null?file=VICTIM"}, "com_port"),
])
def test_every_setting_that_names_a_file_is_held_to_the_same_folders(page, section, values, key):
    gw, browser = page()
    values = {k: v.replace("VICTIM", str(page.outside / "victim.txt")) for k, v in values.items()}
    code, answer = add_section(browser, section, values)
    assert code == 422 and refused(answer, key), answer
    assert (page.outside / "victim.txt").read_text() == "precious\n"


def test_file_roots_are_set_in_the_file_only(page):
    gw, browser = page(f"file_roots = {page.outside}")
    code, answer = add_section(browser, ["buffers", "csv"], {"type": "file", "path": str(page.outside / "ok.csv")})
    assert code == 200, answer
    code, answer = add_section(browser, ["gateway"], {"file_roots": "/"})
    assert code == 422 and refused(answer, "file_roots")
    assert "only in the file itself" in answer["problems"][0]["message"]
    code, answer = add_section(browser, ["gateway"], {"file_roots": ""})   # nor removed
    assert code == 422 and refused(answer, "file_roots")


def test_the_config_file_and_the_spool_are_never_targets(page):
    gw, browser = page(f"file_roots = {page.data}, {page.outside.parent}")
    for target in (gw.config_path, f"{gw.config_path}.bak", page.data / "spool" / "x"):
        code, answer = add_section(browser, ["buffers", "evil"], {"type": "file", "path": str(target)})
        assert code == 422 and refused(answer, "path"), (target, answer)


def test_settings_already_in_the_file_stay_when_the_page_changes_others(page):
    """The admin's own choices in the file are theirs: the page may save other changes (and
    change the rest of that section), but not point it elsewhere."""
    admin = page.outside / "admin.csv"
    gw, browser = page(buffer_lines=f"[[csv]]\n    type = file\n    path = {admin}")
    code, answer = add_section(browser, ["nodes", "10"], {"nodename": "home"})
    assert code == 200, answer
    code, answer = add_section(browser, ["buffers", "csv"], {"max_bytes": "100"})
    assert code == 200, answer
    code, answer = add_section(browser, ["buffers", "csv"], {"path": str(page.outside / "other.csv")})
    assert code == 422 and refused(answer, "path")
