"""The web page's parts in this process: password hashes, sessions, login limits, and the
config editor (secrets masked, checked, atomic saves). The page over HTTP: tests/e2e/test_web_page.py."""

import json
import os
import stat

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigLoader
from gateway.web.auth import LoginLimiter, Sessions, hash_password, verify_password
from gateway.web.configedit import MASK, ConfigEditError, ConfigEditor
from gateway.web.page import WebApp
from listeners import LISTENERS
from tests.support.emoncms_server import WRITE_KEY
from tests.support.web_client import PASSWORD, PASSWORD_HASH


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# -- passwords, sessions, limits --------------------------------------------------------------
def test_password_hash_is_salted_and_verifies():
    first, second = hash_password("pw", iterations=1000), hash_password("pw", iterations=1000)
    assert first != second and first.startswith("pbkdf2_sha256$1000$")
    assert verify_password("pw", first) and verify_password("pw", second)
    assert not verify_password("Pw", first)
    for malformed in ("", "pbkdf2_sha256$x$y$z", "md5$1$AA==$AA==", "a$b"):
        assert not verify_password("pw", malformed)


def test_sessions_expire_when_unused():
    clock = FakeClock()
    sessions = Sessions(ttl=60, clock=clock)
    token, csrf = sessions.create()
    clock.now += 59
    assert sessions.csrf(token) == csrf          # used: its life starts again
    clock.now += 59
    assert sessions.csrf(token) == csrf
    clock.now += 61
    assert sessions.csrf(token) is None
    assert sessions.csrf("made-up") is None and sessions.csrf(None) is None


def test_login_limiter_counts_attempts_before_they_are_checked_then_forgives():
    clock = FakeClock()
    limiter = LoginLimiter(attempts=3, window=60, clock=clock)
    for _ in range(3):
        assert limiter.reserve("10.0.0.1") == 0     # may check (and it is counted already)
    assert limiter.reserve("10.0.0.1") == 60
    assert limiter.reserve("10.0.0.2") == 0         # other clients are not affected
    clock.now += 61
    assert limiter.reserve("10.0.0.1") == 0
    limiter.succeeded("10.0.0.1")                   # a success forgets the failures
    assert all(limiter.reserve("10.0.0.1") == 0 for _ in range(3))


def test_login_limiter_counts_an_ipv6_64_as_one_client():
    limiter = LoginLimiter(attempts=2, window=60, clock=FakeClock())
    assert limiter.reserve("2001:db8:1:2::1") == 0 and limiter.reserve("2001:db8:1:2::ffff") == 0
    assert limiter.reserve("2001:db8:1:2:aaaa::1") > 0
    assert limiter.reserve("2001:db8:1:3::1") == 0
    assert limiter.reserve("::ffff:10.0.0.9") == 0 and limiter.reserve("10.0.0.9") == 0
    assert limiter.reserve("10.0.0.9") > 0


def test_a_new_password_ends_every_session():
    password_hash = [PASSWORD_HASH]
    app = WebApp(dict, None, lambda: password_hash[0], lambda: True)
    code, answer, token = app.login("10.0.0.1", PASSWORD)
    assert code == 200 and app.csrf(token) == answer["csrf"]
    password_hash[0] = hash_password("new", iterations=1000)
    assert app.csrf(token) is None
    assert app.login("10.0.0.1", PASSWORD)[0] == 401 and app.login("10.0.0.1", "new")[0] == 200


# -- the config editor ------------------------------------------------------------------------
CONFIG = f"""# my gateway
[gateway]
    loglevel = INFO
    web_password_hash = {PASSWORD_HASH}
[listeners]
    [[tcp]]
        type = socket
        port = 50011    # the usual
[buffers]
    [[emoncms]]
        type = emoncms
        url = http://127.0.0.1:1
        apikey = {WRITE_KEY}
    [[old]]
        type = emoncms
        [[[init_settings]]]
            url = http://127.0.0.1:2
        [[[runtime_settings]]]
            apikey = {WRITE_KEY[::-1]}
[nodes]
    [[10]]
        nodename = house
"""


@pytest.fixture
def editor(tmp_path):
    path = tmp_path / "oemgateway.conf"
    path.write_text(CONFIG)
    path.chmod(0o640)
    return ConfigEditor(str(path), ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC),
                        backup_folder=str(tmp_path / "state" / "config-backups"))


def backups(editor):
    folder = editor.backup_folder
    return [open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder))] if os.path.isdir(folder) else []


def test_secrets_are_masked_and_the_rest_of_the_file_kept(editor):
    text = editor.masked_text()
    assert WRITE_KEY not in text and WRITE_KEY[::-1] not in text and PASSWORD_HASH not in text
    assert text.count(MASK) == 3
    assert text == CONFIG.replace(WRITE_KEY[::-1], MASK).replace(WRITE_KEY, MASK).replace(PASSWORD_HASH, MASK)
    sections = editor.masked_sections()
    assert sections["buffers"]["emoncms"]["apikey"] == MASK
    assert sections["nodes"]["10"] == {"nodename": "house"}


def test_saving_keeps_masked_secrets_writes_atomically_and_keeps_a_backup(editor):
    edited = editor.masked_text().replace("nodename = house", "nodename = home")
    answer = editor.save(edited)
    assert answer["ok"] and answer["problems"] == []
    saved = editor.read()
    assert saved == CONFIG.replace("nodename = house", "nodename = home")
    assert backups(editor) == [CONFIG]                       # in the state folder,
    assert os.listdir(os.path.dirname(editor.path)) == ["oemgateway.conf", "state"]   # nothing beside the config
    assert stat.S_IMODE(os.stat(editor.path).st_mode) == 0o640
    assert not [f for f in os.listdir(os.path.dirname(editor.path)) if f.startswith(".oemgateway-")]


def test_a_secret_typed_anew_replaces_the_old_one(editor):
    new_key = "f" * 32
    editor.save(editor.masked_text().replace(f"apikey = {MASK}", f"apikey = {new_key}", 1))
    assert f"apikey = {new_key}" in editor.read() and WRITE_KEY[::-1] in editor.read()


def test_a_bad_value_is_refused_with_its_line_and_the_file_is_untouched(editor):
    bad = editor.masked_text().replace("port = 50011", "port = 0")
    result = editor.check(bad)
    assert not result["ok"]
    [problem] = result["problems"]
    assert problem["line"] == bad.splitlines().index("        port = 0    # the usual") + 1
    assert problem["section"] == ["listeners", "tcp"] and problem["key"] == "port"
    assert "too small" in problem["message"] and editor.path in problem["message"]
    with pytest.raises(ConfigEditError):
        editor.save(bad)
    assert editor.read() == CONFIG and backups(editor) == []


def test_syntax_errors_and_unknown_keys_are_placed_too(editor):
    result = editor.check(editor.masked_text() + "[[broken\n")
    assert not result["ok"] and result["problems"][0]["line"] == len(CONFIG.splitlines()) + 1
    typo = editor.masked_text().replace("loglevel = INFO", "loglevel = INFO\n    logelvel = DEBUG")
    result = editor.check(typo)
    assert result["ok"] and result["warnings"][0]["key"] == "logelvel"
    assert result["warnings"][0]["line"] == 4


def test_a_mask_without_a_saved_secret_is_refused(editor):
    text = editor.masked_text().replace("[nodes]", f"    [[new]]\n        type = emoncms\n        apikey = {MASK}\n[nodes]")
    result = editor.check(text)
    assert not result["ok"] and "type it" in result["problems"][0]["message"]


def test_a_file_that_does_not_parse_still_has_its_secrets_masked(editor):
    broken = CONFIG.replace("[nodes]", "[nodes")
    with open(editor.path, "w") as f:
        f.write(broken)
    text = editor.masked_text()
    assert WRITE_KEY not in text and WRITE_KEY[::-1] not in text and PASSWORD_HASH not in text
    assert editor.check(text.replace("[nodes", "[nodes]")) == {"ok": True, "problems": [], "warnings": []}


def test_secrets_are_masked_where_the_type_is_misspelled_over_lines_and_on_bad_lines(editor):
    """A section whose type is misspelled, a triple-quoted secret on two lines, a secret on a
    line that does not parse: each masked in the text; the problems name no secret either."""
    two_lines = CONFIG.replace("[nodes]", "    [[broker]]\n        type = mqtt\n"
                                          "        password = \'\'\'first-line-pw\nsecond-line-pw\'\'\'  # two\n"
                                          "[nodes]")
    typo = "    [[typo]]\n        type = emoncmss\n        apikey = typo-key-1234\n[nodes]"
    with open(editor.path, "w") as f:
        f.write(two_lines.replace("[nodes]", typo))
    text = editor.masked_text()
    for secret in ("typo-key-1234", "first-line-pw", "second-line-pw"):
        assert secret not in text
    assert "password = ********  # two" in text and "apikey = ********" in text
    answer = editor.check(text)
    assert "emoncmss" in answer["problems"][0]["message"] and "typo-key-1234" not in json.dumps(answer)
    with open(editor.path, "w") as f:
        f.write(two_lines)
    editor.save(editor.masked_text().replace("nodename = house", "nodename = home"))   # masks come back
    assert editor.read() == two_lines.replace("nodename = house", "nodename = home")

    with open(editor.path, "w") as f:
        f.write(CONFIG.replace("[nodes]", "    apikey: loose-line-secret-42\n[nodes]"))
    text = editor.masked_text()
    assert "loose-line-secret-42" not in text and "apikey: ********" in text
    answer = editor.check(text)
    assert not answer["ok"] and "loose-line-secret-42" not in json.dumps(answer)
    [problem] = answer["problems"]
    assert problem["line"] == text.splitlines().index("    apikey: ********") + 1
    assert "'apikey' uses ':' where '=' is expected" in problem["message"]


def test_url_credentials_are_masked_and_come_back_only_to_the_same_url(editor):
    with open(editor.path, "w") as f:
        f.write(CONFIG.replace("url = http://127.0.0.1:1", "url = http://me:url-pw-99@127.0.0.1:1/x"))
    text = editor.masked_text()
    assert "url-pw-99" not in text and f"url = http://{MASK}@127.0.0.1:1/x" in text
    assert editor.masked_sections()["buffers"]["emoncms"]["url"] == f"http://{MASK}@127.0.0.1:1/x"
    assert editor.check(text)["ok"]
    moved = editor.check(text.replace("@127.0.0.1:1/x", "@attacker.example:1/x"))
    assert not moved["ok"] and "the URL changed: type its user and password again" in moved["problems"][0]["message"]
    editor.save(text.replace(f"http://{MASK}@127.0.0.1:1/x", "http://me:new-pw@127.0.0.1:1/x"))
    assert "url = http://me:new-pw@127.0.0.1:1/x" in editor.read()
    editor.edit_section(["buffers", "emoncms"], {"url": f"http://{MASK}@127.0.0.1:1/x", "timeout": "5"})
    assert "url = http://me:new-pw@127.0.0.1:1/x" in editor.read()


def test_a_masked_key_is_not_sent_to_a_new_address_typed_on_the_page(editor):
    moved = editor.masked_text().replace("url = http://127.0.0.1:1", "url = http://attacker.example")
    answer = editor.check(moved)
    assert not answer["ok"]
    [problem] = answer["problems"]
    assert problem["key"] == "apikey" and problem["section"] == ["buffers", "emoncms"]
    assert "url changed, so the saved value would go to a new address: type it again" in problem["message"]
    assert editor.check(moved.replace(f"apikey = {MASK}", "apikey = " + "f" * 32, 1))["ok"]
    with pytest.raises(ConfigEditError):
        editor.edit_section(["buffers", "emoncms"], {"url": "http://attacker.example", "apikey": MASK})
    editor.edit_section(["buffers", "emoncms"], {"url": "http://attacker.example", "apikey": "e" * 32})


def test_section_edits_for_the_forms(editor):
    editor.edit_section(["nodes", "10"], {"nodename": "home", "names": "power, voltage", "units": "W, V"})
    editor.edit_section(["buffers", "emoncms"], {"apikey": MASK, "timeout": "3"})
    editor.edit_section(["listeners", "serial"], {"type": "serial", "com_port": "loop://"})
    editor.edit_section(["buffers", "old"], None, remove=True)
    config = editor.loader.load(editor.path)
    assert config.nodes.describe()["10"] == {"nodename": "home", "names": ["power", "voltage"], "units": ["W", "V"]}
    assert config.buffers["emoncms"].settings["apikey"] == WRITE_KEY
    assert set(config.listeners) == {"tcp", "serial"} and set(config.buffers) == {"emoncms"}
    with pytest.raises(ConfigEditError) as error:
        editor.edit_section(["listeners", "tcp"], {"port": "99999"})
    assert error.value.problems[0]["key"] == "port"
