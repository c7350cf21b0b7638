"""Every plugin carries its sample config, and the shipped ``oemgateway.conf`` is made of them:
it cannot drift from the code, every setting is documented, and a setting shown commented out
shows the default the code has."""

import re

import pytest

import oemgateway
from buffers import BUFFERS
from gateway.spool import SPOOL_SPEC
from gateway.config import ConfigLoader, spec_keys
from gateway.nodes import NODE_SAMPLE
from gateway.sample import plugin_sample, shipped_config, spec_defaults
from gateway.settings import spec_of
from listeners import LISTENERS
from tests.support.daemon import shipped_config as committed_config

TYPES = [(LISTENERS, name) for name in LISTENERS.names()] + [(BUFFERS, name) for name in BUFFERS.names()]
# "# key = value" in a sample: a setting commented out (or a shared setting described).
# (A shared setting's description follows its value after two spaces or more.)
COMMENTED_SETTING = re.compile(r"^[ \t]*#[ \t]+(\w+) =(?: ([^\n]*?))?(?:[ \t]{2,}[^\n]*)?$", re.M)
# The other kind of plugin, so that a config of one sample is complete.
PARTNER = {"listener": "[buffers]\n[[csv]]\ntype = file\n", "buffer": "[listeners]\n[[tcp]]\ntype = socket\n"}


def generated() -> str:
    return shipped_config(LISTENERS, BUFFERS, oemgateway.GATEWAY_PARTS, NODE_SAMPLE)


def gateway_section() -> str:
    """The ``[gateway]`` section of the generated config (its indented lines)."""
    lines = generated().split("[gateway]\n", 1)[1].splitlines()
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines) if line and line[0] != " ")])


def test_the_shipped_config_is_what_the_code_generates():
    """After changing a SAMPLE or a SPEC:  python oemgateway.py --sample-config > oemgateway.conf
    (compared with the committed file, as every test reads the shipped config)."""
    assert committed_config() == generated()


@pytest.mark.parametrize("registry, type_name", TYPES, ids=[name for _, name in TYPES])
def test_every_setting_of_a_type_is_in_its_sample(registry, type_name):
    text = plugin_sample(registry, type_name)
    keys = spec_keys(registry.resolve(type_name).settings_spec())
    assert [key for key in keys if not re.search(rf"\b{key}\b", text)] == []


def test_every_gateway_setting_is_in_the_shipped_config():
    section = gateway_section()
    keys = spec_keys(spec_of(oemgateway.GATEWAY_PARTS))
    assert keys and [key for key in keys if not re.search(rf"^    # {key} =|^    {key} =", section, re.M)] == []


@pytest.mark.parametrize("registry, type_name", TYPES, ids=[name for _, name in TYPES])
def test_a_setting_shown_commented_out_shows_the_codes_default(registry, type_name):
    defaults = spec_defaults(registry.resolve(type_name).settings_spec())
    shown = COMMENTED_SETTING.findall(plugin_sample(registry, type_name))
    assert shown and [(key, value, defaults[key]) for key, value in shown
                      if defaults.get(key) is not None and value != defaults[key]] == []


def test_the_gateway_settings_commented_out_show_the_codes_defaults():
    defaults = spec_defaults(spec_of(oemgateway.GATEWAY_PARTS))
    section = gateway_section()
    shown = COMMENTED_SETTING.findall(section)
    assert len(shown) >= len(defaults) - 1   # all but loglevel, which is set
    assert [(key, value) for key, value in shown if value != defaults[key]] == []


@pytest.mark.parametrize("registry, type_name", TYPES, ids=[name for _, name in TYPES])
def test_each_sample_is_a_config_that_loads_without_a_warning(registry, type_name, tmp_path):
    path = tmp_path / "gw.conf"
    path.write_text(f"[{registry.kind}s]\n" + plugin_sample(registry, type_name) + PARTNER[registry.kind])
    config = ConfigLoader(LISTENERS, BUFFERS, SPOOL_SPEC).load(str(path))
    assert config.warnings == []
    plugins = config.listeners if registry is LISTENERS else config.buffers
    assert [(name, plugin.type_name) for name, plugin in plugins.items()] == [(type_name, type_name)]


def test_a_sample_key_the_spec_has_no_default_for_is_refused():
    from gateway.sample import render
    with pytest.raises(ValueError, match="'colour'"):
        render("# the colour\ncolour\n", {"size": "1"}, "")


def shared_settings_classes():
    from buffers.base import Buffer
    from listeners.base import Listener
    from listeners.gpio_lines import EdgeListener
    from listeners.polling import PollingListener
    from listeners.serialport import SerialPortListener
    return [Listener, SerialPortListener, PollingListener, EdgeListener, Buffer]


@pytest.mark.parametrize("cls", shared_settings_classes(), ids=lambda cls: cls.__name__)
def test_settings_a_family_shares_are_documented_with_their_defaults(cls):
    """Also for families no shipped type belongs to yet (a new polled device gets them)."""
    text, defaults = cls.SAMPLE_COMMON, spec_defaults(cls.__dict__["SPEC"])
    assert [key for key in defaults if not re.search(rf"\b{key}\b", text)] == []
    shown = COMMENTED_SETTING.findall(text)
    assert [(key, value) for key, value in shown if defaults.get(key) not in (None, value)] == []
