"""``install.sh``, run for real as root (CI runs as root): the service install the README
documents, on this Debian machine.

The installer puts everything under a temporary root folder (``OEMGATEWAY_ROOT``) and makes a
system user of its own (``OEMGATEWAY_USER``), so that it never touches a real installation and
parallel runs never meet; everything else is what ``sudo ./install.sh`` does. The daemon is then
started exactly as the installed systemd unit's ``ExecStart`` (as its ``User=``, with the folders
and environment systemd gives it) and as the installed SysV script starts it, and sent a frame.
The tests run in order: install (systemd), upgrade (to SysV), uninstall, purge.
"""

import grp
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.support.daemon import ROOT, WAIT, free_port, send_lines
from tests.support.proclog import ProcessLog

INSTALLER = ROOT / "install.sh"
# What any Debian system has before the install: the tree's shape is compared with it at the end.
SKELETON = ("etc/systemd/system/multi-user.target.wants", "etc/init.d", "opt", "run", "var/lib",
            "var/log", "usr/local/bin")
FRAME = b"14 15 26\r\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="installs a system service: needs root (CI runs as root)")


class Installation:
    """The paths of one installation under ``root``, and its installer."""

    def __init__(self, root: Path, user: str):
        self.root = root
        self.user = user
        self.venv = root / "opt/oemgateway"
        self.config = root / "etc/oemgateway/oemgateway.conf"
        self.state = root / "var/lib/oemgateway"
        self.run_dir = root / "run/oemgateway"
        self.log = root / "var/log/oemgateway/oemgateway.log"
        self.unit = root / "etc/systemd/system/oemgateway.service"
        self.unit_link = root / "etc/systemd/system/multi-user.target.wants/oemgateway.service"
        self.init_script = root / "etc/init.d/oemgateway"
        self.pidfile = root / "run/oemgateway.pid"
        self.port = free_port()

    def install(self, *args, init=None, env=None) -> subprocess.CompletedProcess:
        variables = dict(os.environ, OEMGATEWAY_ROOT=str(self.root), OEMGATEWAY_USER=self.user, **(env or {}))
        if init:
            variables["OEMGATEWAY_INIT"] = init
        return subprocess.run([str(INSTALLER), *args], env=variables, capture_output=True, text=True,
                              timeout=600)

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def edit_config(self, **settings) -> None:
        """Change ``key = value`` lines in place, as a user with an editor would."""
        text = self.config.read_text()
        for key, value in settings.items():
            text = re.sub(rf"(?m)^(\s*{key}\s*=\s*).*$", rf"\g<1>{value}", text, count=1)
        self.config.write_text(text)

    def readings(self) -> str:
        return "".join(path.read_text() for path in sorted((self.state / "readings").glob("*.csv")))

    def processes(self):
        return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == self.uid]


def listing(root: Path) -> set:
    """Every path under ``root`` (links not followed), relative to it."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def skeleton() -> set:
    paths = set()
    for folder in SKELETON:
        parts = Path(folder).parts
        paths.update(str(Path(*parts[:i])) for i in range(1, len(parts) + 1))
    return paths


def unit_settings(path: Path) -> dict:
    """The ``Key=Value`` settings of a unit file's [Service] section."""
    settings, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


class Followed:
    """A child process and its output, read by a thread (tests wait for lines, never sleep)."""

    def __init__(self, argv, **kwargs):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                                     if argv[0] == "tail" else subprocess.STDOUT, text=True, **kwargs)
        self.output = ProcessLog(argv[0])
        self.output.follow(self.proc)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(WAIT)
        self.output.join()
        return code


def supplementary_groups(pid: int) -> set:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Groups:"):
                return {int(gid) for gid in line.split()[1:]}
    return set()


def daemon_env(user: str, **folders) -> dict:
    """The environment systemd gives a service (and the SysV script too): nothing inherited."""
    entry = pwd.getpwnam(user)
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "HOME": entry.pw_dir, "USER": user, "LOGNAME": user, "SHELL": entry.pw_shell, **folders}


def as_user(user: str, group: str, argv, no_new_privs=False):
    """``argv`` run as ``user`` with the user's groups, as systemd's User=/Group= do."""
    return (["setpriv", "--reuid", user, "--regid", group, "--init-groups"]
            + (["--no-new-privs"] if no_new_privs else []) + list(argv))


def send_frame(port: int) -> None:
    send_lines(port, FRAME)


@pytest.fixture(scope="module")
def inst():
    if os.geteuid() != 0:
        pytest.fail("the installer tests need root")
    root = Path(tempfile.mkdtemp(prefix="oemgw-install-"))
    root.chmod(0o755)   # the service user must reach its files inside
    for folder in SKELETON:
        (root / folder).mkdir(parents=True)
    installation = Installation(root, "oemgw-" + secrets.token_hex(4))
    yield installation
    # Whatever a failed test left: its processes, its user, its files.
    try:
        for process in installation.processes():
            process.kill()
    except KeyError:
        pass
    installation.install("--uninstall", "--purge")
    shutil.rmtree(root, ignore_errors=True)


def test_install_with_systemd(inst):
    checkout = set(os.listdir(ROOT))
    result = inst.install(init="systemd")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"user      {inst.user} created (groups: dialout" in out
    assert re.search(r"software  OEM Gateway \S+ installed", out)
    assert f"config    {inst.config} created from {ROOT}/oemgateway.conf" in out
    assert f"check     oemgateway: config {inst.config} is valid" in out
    assert f"systemd unit {inst.unit} installed and enabled" in out
    # The user: a system user in dialout, no login, its home the gateway's own folder.
    entry = pwd.getpwnam(inst.user)
    assert entry.pw_uid < 1000 and entry.pw_shell == "/usr/sbin/nologin" and entry.pw_dir == str(inst.state)
    assert inst.user in grp.getgrnam("dialout").gr_mem
    # The config: the shipped one with the readings in the gateway's folder; secrets: 640 root:group.
    shipped = (ROOT / "oemgateway.conf").read_text().splitlines()
    installed = inst.config.read_text().splitlines()
    changed = [(a.strip(), b.strip()) for a, b in zip(shipped, installed) if a != b]
    assert len(shipped) == len(installed)
    path_line = next(line.strip() for line in shipped if line.strip().startswith("path = readings/"))
    assert changed == [(path_line, path_line.replace("readings/", f"{inst.state}/readings/", 1))]
    status = inst.config.stat()
    assert (status.st_mode & 0o777, status.st_uid, grp.getgrgid(status.st_gid).gr_name) == (0o640, 0, inst.user)
    status = inst.state.stat()
    assert (status.st_mode & 0o777, status.st_uid) == (0o750, inst.uid)
    # The unit runs the venv's command; it is enabled; `oemgateway` is on root's PATH.
    assert unit_settings(inst.unit)["ExecStart"] == f"{inst.venv}/bin/oemgateway --config-file {inst.config}"
    assert os.readlink(inst.unit_link) == "/etc/systemd/system/oemgateway.service"
    assert os.readlink(inst.root / "usr/local/bin/oemgateway") == f"{inst.venv}/bin/oemgateway"
    # No root-owned build files left in the checkout (pip builds in the folder it is given).
    assert set(os.listdir(ROOT)) == checkout


@pytest.mark.skipif(not shutil.which("systemd-analyze") and not os.environ.get("CI"),
                    reason="systemd-analyze is not installed")
def test_the_installed_unit_verifies(inst):
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(inst.unit)],
                            capture_output=True, text=True, timeout=WAIT)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line and "non-existent unit multi-user.target" not in line]   # not booted with systemd
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr


def test_the_daemon_runs_as_the_unit_starts_it(inst):
    inst.edit_config(port=inst.port, loglevel="DEBUG")   # as a user would; the file stays 640
    assert inst.config.stat().st_mode & 0o777 == 0o640
    service = unit_settings(inst.unit)
    user = pwd.getpwnam(service["User"])
    group = grp.getgrnam(service["Group"])
    # What systemd makes before ExecStart: RuntimeDirectory= under /run, StateDirectory= under
    # /var/lib (here under the installation's root), the user's own, with their modes.
    runtime = inst.root / "run" / service["RuntimeDirectory"]
    runtime.mkdir(mode=int(service["RuntimeDirectoryMode"], 8))
    os.chown(runtime, user.pw_uid, group.gr_gid)
    state = inst.root / "var/lib" / service["StateDirectory"]
    assert state == inst.state and state.stat().st_uid == user.pw_uid
    env = daemon_env(user.pw_name, RUNTIME_DIRECTORY=str(runtime), STATE_DIRECTORY=str(state))
    argv = as_user(user.pw_name, group.gr_name, shlex.split(service["ExecStart"]),
                   no_new_privs=service.get("NoNewPrivileges") == "yes")
    daemon = Followed(argv, env=env, cwd="/")
    try:
        daemon.output.wait_for(r"INFO oemgateway: ready")
        assert daemon.output.count(rf"spool: hot tier {runtime}/spool, cold tier {state}/spool") == 1
        send_frame(inst.port)
        daemon.output.wait_for("connection closed by the client")
    finally:
        assert daemon.stop() == 0
    daemon.output.wait_for(r"buffer 'file': accepted 1 = delivered 1 \+ queued 0")
    assert re.search(r"(?m)^\d+\.\d+,[-\dT:]+,14,15,26$", inst.readings())
    assert {path.stat().st_uid for path in (runtime / "spool").iterdir()} == {user.pw_uid}


def test_upgrade_keeps_the_config_and_the_sysv_script_runs_it(inst):
    """Running the installer again upgrades; here onto a system without systemd. Then the SysV
    script as documented, on a system user without a home and without /var/lib/oemgateway
    (the state folder gone): the script makes what the gateway needs."""
    config_before = inst.config.read_bytes()
    result = inst.install(init="sysv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"config    {inst.config} kept" in result.stdout
    assert f"SysV init script {inst.init_script} installed, enabled and running" in result.stdout
    assert inst.config.read_bytes() == config_before
    assert not inst.unit.exists() and not os.path.lexists(inst.unit_link)
    assert f"DAEMON={inst.venv}/bin/oemgateway" in inst.init_script.read_text().splitlines()
    subprocess.run([str(inst.init_script), "stop"], check=True, capture_output=True, timeout=60)
    assert inst.processes() == []
    shutil.rmtree(inst.state)      # as in the report: no /var/lib/oemgateway,
    shutil.rmtree(inst.run_dir)    # and /run emptied by a reboot
    log = Followed(["tail", "-F", "-n", "+1", str(inst.log)])
    try:
        start = subprocess.run([str(inst.init_script), "start"], capture_output=True, text=True, timeout=60)
        assert start.returncode == 0, start.stdout + start.stderr
        log.output.wait_for(r"INFO oemgateway: ready", count=2)   # the installer's start, then this one
        assert log.output.wait_for(r"spool: hot tier .*", count=2).endswith(
            f"hot tier {inst.run_dir}/spool, cold tier {inst.state}/spool (durability = process)")
        daemon = psutil.Process(int(inst.pidfile.read_text()))
        assert daemon.uids().real == inst.uid
        assert grp.getgrnam("dialout").gr_gid in supplementary_groups(daemon.pid)
        environment = daemon.environ()
        assert environment["RUNTIME_DIRECTORY"] == str(inst.run_dir)
        assert environment["STATE_DIRECTORY"] == str(inst.state)
        assert "OEMGATEWAY_ROOT" not in environment   # nothing inherited from whoever ran the script
        send_frame(inst.port)
        log.output.wait_for("connection closed by the client")
        assert subprocess.run([str(inst.init_script), "status"], capture_output=True, timeout=60).returncode == 0
        subprocess.run([str(inst.init_script), "stop"], check=True, capture_output=True, timeout=60)
        log.output.wait_for(r"INFO oemgateway: stopped", count=2)
        assert not daemon.is_running() and not inst.pidfile.exists()
    finally:
        log.stop(signal.SIGKILL)
    assert len(re.findall(r"(?m)^\d+\.\d+,[-\dT:]+,14,15,26$", inst.readings())) == 1   # the new state folder's
    status = inst.run_dir.stat()
    assert (status.st_mode & 0o777, status.st_uid) == (0o700, inst.uid)
    assert not inst.run_dir.is_symlink() and not inst.state.is_symlink()


def test_without_its_service_folders_the_daemon_never_uses_a_planted_one(inst):
    """Run by hand as the service user, without $RUNTIME_DIRECTORY and $XDG_RUNTIME_DIR: the
    only tmpfs left is /dev/shm/oemgateway-<uid>, which another local user has made first."""
    planted = Path(f"/dev/shm/oemgateway-{inst.uid}")
    nobody = pwd.getpwnam("nobody")
    victim = inst.state / "victim.txt"
    victim.write_text("precious\n")
    os.chown(victim, inst.uid, -1)
    command = as_user(inst.user, inst.user, [f"{inst.venv}/bin/oemgateway", "--config-file", str(inst.config)])
    env = daemon_env(inst.user, STATE_DIRECTORY=str(inst.state))
    shutil.rmtree(planted, ignore_errors=True)
    try:
        # A folder of nobody's, open to all, with a link where the spool's cursors would go.
        (planted / "spool").mkdir(mode=0o777, parents=True)
        for folder in (planted, planted / "spool"):
            folder.chmod(0o777)
            os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        os.symlink(victim, planted / "spool/cursors")
        result = subprocess.run(command, env=env, cwd="/", capture_output=True, text=True, timeout=WAIT)
        assert result.returncode == 2, result.stderr
        assert "cannot open the spool: no folder for the spool's hot tier (a tmpfs) can be used: " in result.stderr
        assert f"; {planted} belongs to nobody, not to {inst.user} who runs the gateway" in result.stderr
        assert ". To fix: remove a folder someone else made, or set [gateway] runtime_dir to a folder of the gateway's own" in result.stderr
        # The same as a link of nobody's to a folder the user owns.
        shutil.rmtree(planted)
        decoy = inst.state / "decoy"
        decoy.mkdir(mode=0o700)
        os.chown(decoy, inst.uid, -1)
        os.symlink(decoy, planted)
        os.lchown(planted, nobody.pw_uid, nobody.pw_gid)
        result = subprocess.run(command, env=env, cwd="/", capture_output=True, text=True, timeout=WAIT)
        assert result.returncode == 2, result.stderr
        assert f"{planted} is a symbolic link made by nobody, who could point it anywhere" in result.stderr
        assert os.listdir(decoy) == [] and victim.read_text() == "precious\n"
    finally:
        if planted.is_symlink():
            planted.unlink()
        shutil.rmtree(planted, ignore_errors=True)
    # A logged-in user has a private runtime folder of their own: the gateway prefers it.
    xdg = inst.state / "xdg"
    xdg.mkdir(mode=0o700)
    os.chown(xdg, inst.uid, -1)
    daemon = Followed(command, env={**env, "XDG_RUNTIME_DIR": str(xdg)}, cwd="/")
    try:
        daemon.output.wait_for(r"INFO oemgateway: ready")
        assert daemon.output.count(rf"hot tier {xdg}/oemgateway/spool,") == 1
    finally:
        assert daemon.stop() == 0
    assert not planted.exists()


def test_the_readme_documents_the_tested_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Run as a service"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = {line.split("#")[0].strip() for block in blocks for line in block.splitlines()
                if "./install.sh" in line}
    assert commands >= {"sudo ./install.sh", "sudo ./install.sh --uninstall", "sudo ./install.sh --uninstall --purge"}
    assert commands <= {"sudo ./install.sh", "sudo ./install.sh --uninstall", "sudo ./install.sh --uninstall --purge",
                        "git pull && sudo ./install.sh"}


def test_uninstall_keeps_only_the_config_and_the_data(inst):
    config = inst.config.read_bytes()
    uid = inst.uid
    result = inst.install("--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    for kept in ("etc/oemgateway", "var/lib/oemgateway", "var/log/oemgateway"):
        assert f"kept      {inst.root / kept}" in result.stdout
    left = listing(inst.root) - skeleton()
    assert {path for path in left if not path.startswith(("var/lib/oemgateway", "var/log/oemgateway"))} == {
        "etc/oemgateway", "etc/oemgateway/oemgateway.conf"}
    assert inst.config.read_bytes() == config
    assert re.search(r"(?m)^\d+\.\d+,[-\dT:]+,14,15,26$", inst.readings())
    with pytest.raises(KeyError):
        pwd.getpwnam(inst.user)
    with pytest.raises(KeyError):
        grp.getgrnam(inst.user)
    assert inst.user not in grp.getgrnam("dialout").gr_mem
    assert [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid] == []
    # --purge: nothing left at all.
    result = inst.install("--uninstall", "--purge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert listing(inst.root) == skeleton()


def test_a_python_without_venv_is_explained(tmp_path):
    """Debian ships venv support separately (python3-venv): the installer installs it with
    apt-get; when that fails it says what to type, and has changed nothing."""
    fake_python = tmp_path / "python3"
    fake_python.write_text('#!/bin/sh\ncase "$*" in *ensurepip*) exit 1;; esac\nexec /usr/bin/python3 "$@"\n')
    calls = tmp_path / "apt-get.calls"
    fake_apt = tmp_path / "bin/apt-get"
    fake_apt.parent.mkdir()
    fake_apt.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 100\n')
    for script in (fake_python, fake_apt):
        script.chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    user = "oemgw-" + secrets.token_hex(4)
    result = subprocess.run([str(INSTALLER)], capture_output=True, text=True, timeout=60, env=dict(
        os.environ, PATH=f"{fake_apt.parent}:{os.environ['PATH']}", OEMGATEWAY_ROOT=str(root),
        OEMGATEWAY_USER=user, OEMGATEWAY_PYTHON=str(fake_python)))
    assert result.returncode == 1
    assert f"{fake_python} cannot make virtual environments: installing python3-venv with apt-get" in result.stdout
    assert ("could not install python3-venv; run  sudo apt update && sudo apt install python3-venv  "
            "then this script again") in result.stderr
    assert calls.read_text().splitlines() == ["update -qq"]
    assert os.listdir(root) == []
    with pytest.raises(KeyError):
        pwd.getpwnam(user)


def test_it_asks_for_root():
    folder = Path(tempfile.mkdtemp(prefix="oemgw-checkout-"))   # a checkout anyone may read
    try:
        folder.chmod(0o755)
        shutil.copy(INSTALLER, folder)
        result = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                                 str(folder / "install.sh")], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 1
    assert "it installs a system service: run it as root (sudo " in result.stderr
