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


@pytest.fixture
def running():
    """The event loop running on a thread, for a listener tested in this process."""
    from tests.support.loop_thread import LoopThread
    with LoopThread() as loop:
        yield loop


@pytest.fixture
def modbus_server():
    """``start(*meters)``: a pymodbus server for SimulatedMeters; ``.start_tcp()`` or ``.start_rtu(link)``."""
    from tests.support.modbus_server import ModbusServer
    servers = []

    def start(*meters):
        servers.append(ModbusServer(meters))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def mbus_bus():
    """``start(*meters, echo=False)``: simulated M-Bus meters on one bus; ``.start_serial(link)``
    or ``.start_tcp()``."""
    from tests.support.mbus_meter import MeterBus
    buses = []

    def start(*meters, echo=False):
        buses.append(MeterBus(meters, echo=echo))
        return buses[-1]

    yield start
    for bus in buses:
        bus.stop()
