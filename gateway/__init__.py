"""The gateway's shared vocabulary: frames, the event loop, config and logging helpers.

Listeners (``listeners/``) and buffers (``buffers/``) are plugins built on these; the daemon
(``oemgateway.py``) wires them together.
"""

__version__ = "2.0.0.dev0"
