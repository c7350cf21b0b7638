"""The Set up forms' "Test" button: send one reading to a destination, or read once from a
device, with the settings in the form (not yet saved), and say what happened in words.

Runs on the HTTP server's worker thread, never on the event loop's: a dead server or a silent
device makes the page wait (up to the plugin's own timeout), never the gateway.
"""

import time
from typing import Optional

from gateway.frame import Frame
from gateway.logs import error_text
from gateway.web.watch import advice

TEST_NODE, TEST_INPUT = "oemgateway", "test"
SERIAL_WAIT = 5.0   # seconds a serial device is given to send one line


def test_destination(cls, name: str, settings: dict) -> dict:
    """Send one reading (node ``oemgateway``, input ``test`` = 1) with ``settings``:
    ``{"ok", "message", "advice"}``."""
    buffer = cls(name, settings)   # a buffer plugin alone: no queue, no sender thread
    try:
        inactive = buffer.inactive_reason()
        if inactive:
            return {"ok": False, "message": f"not sent: {inactive}", "advice": None}
        frame = Frame(TEST_NODE, (1,), time.time(), (TEST_INPUT,), None, "web page test")
        problem = buffer.check(frame)
        if problem:
            return {"ok": False, "message": f"not sent: {problem}", "advice": None}
        buffer.send([frame])
    except Exception as exc:   # noqa: BLE001 - whatever the destination says is the answer
        message = error_text(exc) if isinstance(exc, OSError) else str(exc)
        return {"ok": False, "message": message, "advice": advice(message)}
    finally:
        try:
            buffer.close_transport()
        except Exception:   # noqa: BLE001 - the answer is already known
            pass
    return {"ok": True, "message": f"delivered: node '{TEST_NODE}', input '{TEST_INPUT}' = 1 "
                                   f"(look for it in the destination)", "advice": None}


def test_device(cls, name: str, settings: dict, running: Optional[dict] = None) -> dict:
    """Read once from the device of a listener with ``settings``: ``{"ok", "message", "advice"}``.
    A device the running gateway already reads (``running``: its status entry) is not opened a
    second time: its live status is the answer."""
    if running is not None and running.get("state") == "open":
        age = running.get("last_frame_age_s")
        return {"ok": True, "message": "running: " + ("no frame yet" if age is None else
                                                      f"last frame {age:.0f} s ago, {running['frames_good']} good, "
                                                      f"{running['frames_bad']} bad"), "advice": None}
    if "com_port" in settings:
        return _read_serial_line(settings)
    if hasattr(cls, "poll") and "interval" in settings:
        return _poll_once(cls, name, settings)
    return {"ok": True, "message": "this listener waits for others to send to it: nothing to read "
                                   "once (save it, then watch its frames)", "advice": None}


def _read_serial_line(settings: dict) -> dict:
    import serial   # pyserial, a dependency of the serial listeners
    try:
        with serial.serial_for_url(settings["com_port"], settings.get("com_baud") or 9600, timeout=SERIAL_WAIT,
                                   exclusive=True) as port:
            line = port.readline()
    except (OSError, ValueError, serial.SerialException) as exc:
        return {"ok": False, "message": f"cannot open {settings['com_port']}: {exc}",
                "advice": "check the device name (ls /dev/serial/by-id/), that it is plugged in, and that "
                          "no other program (or listener) uses it"}
    if not line:
        return {"ok": False, "message": f"{settings['com_port']} opened, but sent nothing in {SERIAL_WAIT:.0f} s",
                "advice": "is the device sending? check com_baud"}
    return {"ok": True, "message": f"read: {line.decode('utf-8', 'backslashreplace').strip()}", "advice": None}


def _poll_once(cls, name: str, settings: dict) -> dict:
    from gateway.eventloop import EventLoop
    loop = EventLoop()
    try:
        listener = cls(name, settings, loop, lambda item: None)
        try:
            frames = []
            for device in listener.devices():
                frames += list(device.poll())
                device.release()
        finally:
            listener.poll_errors.flush()
    except Exception as exc:   # noqa: BLE001 - the device's answer, whatever it is
        return {"ok": False, "message": str(exc) or type(exc).__name__, "advice": None}
    finally:
        loop.close()
    shown = "; ".join(f"node {f.node}: " + " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in
                                                     getattr(f, "values", ())) for f in frames[:5])
    return {"ok": bool(frames), "message": f"read: {shown}" if frames else "the device answered nothing",
            "advice": None}
