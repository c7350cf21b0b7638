"""What a first-time user meets before the config: starting the gateway the 2013 way, and a
README that tells the whole command line and every setting."""

import os
import re
import subprocess
import sys

import pytest

from tests.support.daemon import DAEMON, ROOT

README = (ROOT / "README.md").read_text()


def run_bare_python(*args, path_entries=(), cwd=None):
    """``python3 oemgateway.py ...`` with a Python that has none of the gateway's packages
    (``-S``: no site-packages), or only the folders in ``path_entries``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(map(str, path_entries))
    return subprocess.run([sys.executable, "-S", str(DAEMON), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)


def test_started_without_its_packages_it_says_which_and_how_to_install(tmp_path):
    conf = tmp_path / "oemgateway.conf"
    conf.write_text("[listeners]\n[[s]]\ntype = socket\n")
    result = run_bare_python("--config-file", str(conf), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr
    assert result.stderr.startswith("oemgateway: the Python package 'configobj' is missing")
    assert "python3 -m venv .venv && .venv/bin/pip install ." in result.stderr
    assert "python3 -m venv .venv && .venv/bin/pip install ." in README   # the command it names is the README's


def test_a_package_a_plugin_needs_is_named_too(tmp_path):
    """configobj there (Debian's python3-configobj, say) but not paho-mqtt: the config names an
    mqtt buffer, whose module needs it."""
    import configobj
    import validate
    folder = tmp_path / "only-configobj"
    folder.mkdir()
    for module in (configobj, validate):
        source = os.path.dirname(module.__file__) if module.__file__.endswith("__init__.py") else module.__file__
        os.symlink(source, folder / os.path.basename(source))
    conf = tmp_path / "oemgateway.conf"
    conf.write_text("[buffers]\n[[m]]\ntype = mqtt\n")
    result = run_bare_python("--config-file", str(conf), "--check", path_entries=[folder])
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("oemgateway: the Python package 'paho-mqtt' is missing"), result.stderr
    assert "could not be checked" not in result.stderr and "Traceback" not in result.stderr


# -- the README: the whole command line, every [gateway] setting, ways to send a frame -----------
def test_the_readme_lists_every_command_line_option():
    import oemgateway
    options = {option for action in oemgateway.build_parser()._actions for option in action.option_strings
               if action.help != "==SUPPRESS==" and option.startswith("--")}
    section = README.split("\n## Command line", 1)[1].split("\n## ", 1)[0]
    assert options - {"--help"} <= set(re.findall(r"`(--[a-z-]+)", section)), options


def test_the_readme_gateway_table_lists_every_gateway_setting():
    from gateway.spool import SPOOL_SPEC
    from gateway.config import GATEWAY_SPEC, spec_keys
    table = README.split("### `[gateway]`", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"`(\w+)`", "\n".join(line.split("|")[1] for line in table.splitlines()
                                                       if line.startswith("| `"))))
    assert set(spec_keys(GATEWAY_SPEC + SPOOL_SPEC)) == documented


def test_the_readme_sends_a_frame_without_netcat_first():
    """Debian has no nc by default: bash's /dev/tcp and Python come first, then the package."""
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert quick.index("/dev/tcp/127.0.0.1/50011") < quick.index("socket.create_connection") < quick.index(
        "apt install netcat-openbsd")


@pytest.mark.parametrize("command", ["/dev/tcp", "python3"])
def test_the_readmes_ways_of_sending_a_frame_work(gateway_factory, command, tmp_path):
    from tests.support.daemon import free_port
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in quick.splitlines() if command in line and "50011" in line)
    port = free_port()
    gw = gateway_factory(f"[gateway]\nloglevel = DEBUG\n[listeners]\n[[s]]\ntype = socket\nport = {port}\n"
                         "[buffers]\n[[f]]\ntype = file\npath = out.csv\n")
    subprocess.run(["bash", "-c", line.split("#")[0].replace("50011", str(port))], check=True, timeout=60)
    gw.wait_for_log("connection closed by the client")   # the gateway has read the frame: stop now
    assert gw.stop() == 0
    assert (gw.config_path.parent / "out.csv").read_text().splitlines()[1].endswith(",14,15,26")
