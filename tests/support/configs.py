"""Config texts the end-to-end tests share, and the config loader as the daemon runs it."""

import textwrap

import pytest

from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigError, ConfigLoader
from listeners import LISTENERS
from tests.support.emoncms_server import WRITE_KEY


def load(tmp_path, text):
    """Write ``text`` to a config file in ``tmp_path`` and load it with every plugin type."""
    path = tmp_path / "gw.conf"
    path.write_text(textwrap.dedent(text))
    return ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC).load(str(path))


def problems_of(tmp_path, text):
    """The problems loading ``text`` reports (it must fail)."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def listener_config(emoncms, listeners: str, extra: str = "", gateway: str = "clock = trusted") -> str:
    """A config text: DEBUG log, the given ``[listeners]`` sections, one emoncms buffer that
    sends to the test emoncms at once; ``extra`` goes after the buffer (more keys, [nodes])."""
    return f"""
    [gateway]
    loglevel = DEBUG
    {gateway}
    [listeners]
    {listeners}
    [buffers]
    [[emoncms]]
    type = emoncms
    url = {emoncms.url}
    apikey = {WRITE_KEY}
    retry_max = 0.2
    {extra}
    """


def socket_config(port, buffers: str, gateway: str = "", listener: str = "", loglevel: str = "DEBUG") -> str:
    """A config text: a socket listener ``[[tcp]]`` on ``port`` feeding ``buffers`` (the
    sections under ``[buffers]``, as text). ``gateway`` and ``listener`` are extra lines for
    those sections. The tests and the benchmarks build their daemons' configs on it."""
    return f"""
    [gateway]
    loglevel = {loglevel}
    {gateway}
    [listeners]
    [[tcp]]
    type = socket
    port = {port}
    {listener}
    [buffers]
    {buffers}
    """


def socket_emoncms_config(port, url, gateway="", listener="", buffer="", apikey=None) -> str:
    """The common end-to-end setup: DEBUG log, a socket listener ``[[tcp]]`` on ``port``, an
    emoncms buffer sending to ``url`` that retries quickly. ``gateway``, ``listener`` and
    ``buffer`` are extra lines for those sections."""
    return socket_config(port, f"""
    [[emoncms]]
    type = emoncms
    url = {url}
    apikey = {apikey or WRITE_KEY}
    retry_max = 0.2
    {buffer}
    """, gateway=gateway, listener=listener)


def socket_buffer_config(port, name, buffer_type, settings: dict, nodes: str = "") -> str:
    """A socket listener ``[[tcp]]`` on ``port`` feeding one buffer ``[[name]]`` of
    ``buffer_type`` with ``settings``; DEBUG log, trusted clock, config checked every 0.2 s."""
    lines = "\n".join(f"    {key} = {value}" for key, value in settings.items())
    return socket_config(port, f"""
    [[{name}]]
    type = {buffer_type}
{lines}
    {nodes}
    """, gateway="clock = trusted\n    config_check_interval = 0.2")


def values_by_node(rows) -> dict:
    """The test emoncms' rows as ``{node: {input name: value}}`` (the last value of each)."""
    out = {}
    for row in rows:
        out.setdefault(row.node, {})[row.name] = row.value
    return out
