"""The gateway installs top-level packages with plain names (``gateway``, ``listeners``,
``buffers``, ``protocols``), which another project could also use. Every install the project
documents therefore goes into a virtual environment of its own, made by the same command, and
the installed names are exactly the checkout's own folders."""

import re
import runpy
from pathlib import Path

import setuptools

import gateway

ROOT = Path(__file__).resolve().parents[2]
# "python3 -m venv DIR && DIR/bin/pip install ...": the environment is made for this install.
OWN_VENV = re.compile(r"python3 -m venv (\S+) && \1/bin/pip install ")


def install_lines(path: Path):
    """The commands in ``path`` that run pip (a script's lines, a Markdown file's code blocks;
    not comments)."""
    lines, in_code = [], not path.name.endswith(".md")
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and "pip install" in line and not line.lstrip().startswith("#"):
            lines.append(line)
    return lines


def test_every_documented_install_goes_into_a_virtual_environment_of_its_own():
    documented = install_lines(ROOT / "README.md") + install_lines(ROOT / ".ci" / "run") + [gateway.INSTALL]
    assert len(documented) >= 4
    assert [line for line in documented if not OWN_VENV.search(line)] == []


def test_the_service_install_uses_its_own_virtual_environment():
    script = (ROOT / "install.sh").read_text()
    assert re.search(r"^VENV=\$ROOT/opt/oemgateway$", script, re.M)
    assert '"$PYTHON" -m venv --clear "$VENV"' in script
    assert install_lines(ROOT / "install.sh") == [
        '    "$VENV/bin/python" -m pip install --quiet --use-pep517 "$BUILD" ||']


def test_the_installed_top_level_names_are_the_checkouts_own(monkeypatch):
    """A package folder added to the checkout but not to setup.py would be missing from an
    installed gateway; a name installed that is not ours would be a clash we made."""
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    assert sorted(captured["packages"]) == sorted(setuptools.find_packages(str(ROOT), exclude=["tests*", "bench*"]))
    assert captured["py_modules"] == ["oemgateway"]
