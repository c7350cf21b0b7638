"""The gateway's shared vocabulary: frames, the event loop, config and logging helpers.

Listeners (``listeners/``) and buffers (``buffers/``) are plugins built on these; the daemon
(``oemgateway.py``) wires them together.
"""

__version__ = "2.0.0.dev0"

# The packages ``pip install .`` brings (setup.py's install_requires), by the modules they give.
DEPENDENCIES = {"configobj": "configobj", "validate": "configobj", "serial": "pyserial",
                "paho": "paho-mqtt",
                "pymodbus": "pymodbus"}
INSTALL = "python3 -m venv .venv && .venv/bin/pip install ."


def missing_dependency(exc: BaseException):
    """What to tell a user whose Python lacks one of the gateway's packages (``exc`` is the
    ImportError), or None when ``exc`` is about something else. Started as in 2013,
    ``python3 oemgateway.py`` outside the virtual environment, the gateway gets here."""
    if not isinstance(exc, ImportError) or not getattr(exc, "name", None):
        return None
    package = DEPENDENCIES.get(exc.name.split(".")[0])
    if package is None:
        return None
    import sys
    return (f"oemgateway: the Python package '{package}' is missing: this Python ({sys.executable}) "
            "does not have the gateway's packages. Install them in a virtual environment in the "
            f"gateway's folder and run the gateway from there (README, Quick start):\n"
            f"    {INSTALL}\n"
            "    .venv/bin/oemgateway --config-file oemgateway.conf\n"
            "or install it as a service: sudo ./install.sh")
