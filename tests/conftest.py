"""Fixtures shared by the unit and end-to-end tests: the test emoncms and the daemon as a
subprocess. Helpers live in ``tests/support/``."""

import shutil
import textwrap

import pytest

from tests.support.daemon import GatewayProcess, runtime_dir_for
from tests.support.emoncms_server import FakeEmoncms


@pytest.fixture
def emoncms():
    server = FakeEmoncms().start()
    yield server
    server.stop()


@pytest.fixture
def gateway_factory(tmp_path):
    """``start(config_text)`` writes the config to a temp folder and runs the daemon on it."""
    started = []

    def start(config_text: str, name: str = "oemgateway.conf", wait_ready=True, extra_args=(), env=None,
              every_port=True):
        path = tmp_path / name
        path.write_text(textwrap.dedent(config_text))
        gateway = GatewayProcess(path, extra_args, env)
        started.append(gateway)
        if wait_ready:
            gateway.wait_ready(every_port=every_port)
        return gateway

    yield start
    for gateway in started:
        gateway.kill()
    shutil.rmtree(runtime_dir_for(tmp_path), ignore_errors=True)
