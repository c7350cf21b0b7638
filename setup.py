"""Installs the ``oemgateway`` command: ``pip install .`` (add ``[test]`` for the test suite)."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "gateway" / "__init__.py").read_text()).group(1)

setup(
    name="oemgateway",
    version=VERSION,
    description="Forwards energy-monitor readings (radios, serial, TCP, MQTT, meters, sensors) "
                "to emoncms and other servers without losing any",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.9",
    py_modules=["oemgateway"],
    packages=["gateway", "gateway.spool", "gateway.web", "listeners", "buffers", "protocols"],
    package_data={"gateway.web": ["static/*.html", "static/*.js", "static/*.css"]},   # the web page
    install_requires=[
        "configobj>=5.0.6",   # the config format users know; validation with configspecs
        "pyserial>=3.5",      # serial ports and RFM2Pi boards
        "paho-mqtt>=2,<3",    # the MQTT buffer: the Eclipse reference client
        "pymodbus>=3.6",      # Modbus RTU and TCP meters: the maintained Python Modbus stack
    ],
    extras_require={
        "gpio": ["gpiod>=2"],   # pulse and gpio listeners: libgpiod 2, the kernel's GPIO character device
        # The RFM69 radio on the Pi's SPI bus (type = rfm69), imported only when one is configured.
        "radio": ["spidev>=3.5", "gpiod>=2"],
        "test": ["pytest>=7", "hypothesis>=6", "psutil>=5.8", "prometheus-client>=0.17",
                 "selenium>=4.10", "requests>=2.25"],
    },
    entry_points={"console_scripts": ["oemgateway = oemgateway:main"]},
    data_files=[("share/oemgateway", ["oemgateway.conf"])],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: Home Automation",
    ],
)
