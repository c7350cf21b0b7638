"""``oemgateway --sample-config [TYPE]`` as a user runs it."""

import subprocess
import sys

from tests.support.daemon import DAEMON, shipped_config


def sample_config(*args):
    return subprocess.run([sys.executable, str(DAEMON), "--sample-config", *args], capture_output=True,
                          text=True, timeout=60)


def test_without_a_type_it_prints_the_shipped_config():
    result = sample_config()
    assert result.returncode == 0, result.stderr
    assert result.stdout == shipped_config()


def test_a_type_prints_its_section_with_the_shared_settings_under_any_of_its_names():
    result = sample_config("OemGatewaySocketListener")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("# Paste under [listeners]:")
    assert "#   max_line = 4096" in text
    assert "    [[socket]]\n        type = socket\n" in text and "        # max_clients = 64\n" in text
    mqtt = sample_config("mqtt").stdout   # a listener type and a buffer type: both
    listener, buffer = mqtt.split("# Paste under [buffers]:")
    assert listener.startswith("# Paste under [listeners]:") and "# topics = " in listener
    assert "#   retry_max = 5" in buffer and "    [[mqtt]]\n        type = mqtt\n        host = localhost\n" in buffer


def test_an_unknown_type_is_an_error_naming_the_types():
    result = sample_config("mqqt")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("oemgateway: no listener or buffer type 'mqqt' (types: ")
    assert "socket" in result.stderr and result.stderr.rstrip().endswith("did you mean 'mqtt'?")
