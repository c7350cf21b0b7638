"""Where the spool keeps its files: never in a folder another local user made or can change,
never through another user's symbolic link, never following a link to a file.

A folder another user controls would let them point the spool's files anywhere the gateway's
user can write (the gateway would overwrite them) or feed it readings. The tests plant such
folders and links as another user (``nobody``) would; doing that needs root, as CI has.
The end-to-end case (the daemon run as a service user with only /dev/shm left) is in
``test_install.py``.
"""

import logging
import os
import pwd

import pytest

from gateway.spool import build_spool, runtime_candidates, runtime_dir, state_dir
from gateway.spool.storage import OsFiles

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("planting another user's folders needs root")
        pytest.skip("planting another user's folders needs root")


def planted(path, mode=0o777):
    """A folder made by another local user, writable by everyone, as an attacker would leave it."""
    path.mkdir(mode=mode)
    path.chmod(mode)
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    return path


def planted_link(link, target):
    link.symlink_to(target)
    os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)
    return link


def victim_file(tmp_path):
    """A file the gateway's user can write, that an attacker would like it to overwrite."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return victim


def gateway_settings(runtime, state):
    return {"durability": "process", "runtime_dir": str(runtime), "state_dir": str(state),
            "hot_max_mb": 16.0, "max_disk_mb": 64.0, "max_age": 30.0, "spill_after": 60.0,
            "spill_interval": 60.0, "power_sync_interval": 5.0}


def test_a_folder_made_by_another_user_is_refused(tmp_path, as_root):
    folder = planted(tmp_path / "runtime")
    with pytest.raises(OSError, match=r"\[gateway\] runtime_dir: .*/runtime belongs to nobody, not to root "
                                      r"who runs the gateway: .*remove it, or give the gateway a folder"):
        runtime_dir(str(folder))
    assert os.listdir(folder) == []


def test_nothing_is_made_inside_a_folder_another_user_controls(tmp_path, as_root):
    parent = planted(tmp_path / "theirs")
    with pytest.raises(OSError, match=r"\[gateway\] state_dir: .*/theirs belongs to nobody"):
        state_dir(str(parent / "oemgateway"))
    assert os.listdir(parent) == []


def test_a_folder_writable_by_others_is_refused(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(OSError, match=r"open is writable by other users.*chmod 700 .*/open"):
        state_dir(str(folder))
    with pytest.raises(OSError, match=r"open is writable by other users"):
        OsFiles(str(folder))


def test_a_sticky_folder_of_ours_holds_a_private_spool_folder(tmp_path):
    """A fresh tmpfs mount is 1777: others may add names to it but never replace ours."""
    folder = tmp_path / "mount"
    folder.mkdir()
    folder.chmod(0o1777)
    assert runtime_dir(str(folder)) == str(folder)
    files = OsFiles(str(folder / "spool"))
    assert os.stat(files.folder).st_mode & 0o777 == 0o700


def test_a_folder_reached_through_another_users_link_is_refused(tmp_path, as_root):
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    link = planted_link(tmp_path / "link", ours)
    with pytest.raises(OSError, match=r"link is a symbolic link made by nobody, who could point it anywhere"):
        runtime_dir(str(link))
    with pytest.raises(OSError, match=r"link is a symbolic link made by nobody"):
        runtime_dir(str(link / "deeper"))
    # A link of our own (or root's) is ours to follow: an administrator's choice.
    (tmp_path / "mine").symlink_to(ours)
    assert runtime_dir(str(tmp_path / "mine")) == str(tmp_path / "mine")


def test_a_symlinked_spool_file_is_refused_and_its_target_untouched(tmp_path, as_root):
    """The attack on the old fallback folder: a planted ``cursors`` link made the gateway
    overwrite the link's target with its cursor slots."""
    victim = victim_file(tmp_path)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (runtime / "spool").mkdir(mode=0o700)
    (runtime / "spool" / "cursors").symlink_to(victim)
    with pytest.raises(OSError, match=r"spool/cursors is a symbolic link; the spool never follows links: "
                                      r"remove it \(rm .*/spool/cursors\)"):
        spool = build_spool(gateway_settings(runtime, tmp_path / "state"))
        spool.open()
        spool.close()
    assert victim.read_text() == "precious\n"


def test_a_link_that_appears_later_is_never_followed(tmp_path):
    victim = victim_file(tmp_path)
    files = OsFiles(str(tmp_path / "spool"))
    os.symlink(victim, tmp_path / "spool" / "00000000000000000001.seg")
    with pytest.raises(OSError, match="is a symbolic link; the spool never follows links"):
        files.append("00000000000000000001.seg", b"x" * 100)
    assert victim.read_text() == "precious\n"


def test_another_users_file_in_the_spool_folder_is_refused(tmp_path, as_root):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    (folder / "cursors").write_bytes(b"")
    os.chown(folder / "cursors", NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(OSError, match=r"cursors belongs to nobody, not to root: give the folder to the "
                                      r"gateway's user \(chown -R root .*/spool\)"):
        OsFiles(str(folder))


def test_the_users_own_runtime_folder_comes_before_shared_ones(monkeypatch):
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    uid = os.geteuid()
    assert [folder for _, folder in runtime_candidates("", env)] == [
        "/run/user/1000/oemgateway", "/run/oemgateway", f"/dev/shm/oemgateway-{uid}"]
    env["RUNTIME_DIRECTORY"] = "/run/oemgateway"   # the service's: systemd's or the SysV script's
    assert [folder for _, folder in runtime_candidates("", env)][:2] == [
        "/run/oemgateway", "/run/user/1000/oemgateway"]
    assert runtime_candidates("/mnt/ram", env) == [("[gateway] runtime_dir: ", "/mnt/ram")]


def test_a_planted_candidate_is_passed_over_for_a_safe_one(tmp_path, as_root, monkeypatch, caplog):
    trap = planted(tmp_path / "trap")
    private = tmp_path / "xdg"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(trap))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(private))
    with caplog.at_level(logging.WARNING, "oemgateway.spool"):
        assert runtime_dir("") == str(private / "oemgateway")
    assert os.listdir(trap) == []
    assert "spool: not using $RUNTIME_DIRECTORY: " + str(trap) + " belongs to nobody" in caplog.text
