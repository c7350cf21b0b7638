"""The polling contract: devices that must be asked for a reading (a meter, a sensor).

A polling listener implements only ``poll()``, which may block (a Modbus request, a 750 ms
1-wire conversion) and returns the frames it read. This base owns everything else:

- the schedule: every ``interval`` seconds, timed on the event loop (no thread wakes while
  nothing is due);
- the thread: polls run on a worker thread, so the loop that reads every other listener never
  waits on a device; a device is never polled again while its last poll runs (polls of one
  device never overlap);
- the hand-off: frames go to the loop thread (``loop.call_soon_threadsafe``) and from there to
  every buffer like any other listener's frames;
- errors: a poll that raises is counted and logged (one WARNING when a device starts failing,
  rate-limited summaries while it goes on, one INFO when it answers again); a failing device is
  asked again after ``interval``, then twice as long each time, up to ``retry_max``;
- status: per device the time of the last good read, errors, the last error, how long the last
  poll took (``latency_s``), for ``/status``.

A listener with several devices (meters sharing one serial bus) returns them from
``devices()``: each a ``PolledDevice`` with its own name, interval, backoff and status. Devices
with the same ``lane`` (a serial port) are polled one after another on one worker thread;
devices on different lanes (meters on the network) run side by side, so a silent one never
delays the others.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Union

from gateway.backoff import Backoff
from gateway.frame import Frame, Number, RawFrame
from gateway.logs import LogThrottle, error_text
from listeners.base import Listener

LOG_INTERVAL = 60.0   # s between summaries of a device's repeated errors


class PollError(Exception):
    """A device gave no reading this time (no answer, a bad checksum, an exception code): the
    message says why, for the log and ``/status``. Any other exception is a fault in the code
    and is logged with its traceback; both count as a failed poll."""


class PolledDevice:
    """One thing a polling listener asks for readings. A subclass implements ``poll()``."""

    def __init__(self, name: str, interval: float, lane: str = ""):
        self.name = name
        self.interval = interval
        self.lane = lane

    def poll(self) -> Iterable[Union[Frame, RawFrame]]:
        """Read the device (blocking is fine) and return its frames; raise PollError (or
        OSError) when there is no reading this time."""
        raise NotImplementedError

    def release(self) -> None:
        """Close connections and ports; runs on the worker thread once polling has stopped."""


class _ListenerDevice(PolledDevice):
    """A listener that is one device: its own ``poll()`` and ``release()``."""

    def __init__(self, listener: "PollingListener"):
        super().__init__(listener.name, listener.settings["interval"], lane=listener.name)
        self.listener = listener

    def poll(self):
        return self.listener.poll()

    def release(self) -> None:
        self.listener.release()


@dataclass
class DeviceStatus:
    polls: int = 0
    errors: int = 0
    last_good_read: Optional[float] = None   # wall-clock time
    last_error: Optional[str] = None
    latency_s: Optional[float] = None        # how long the last poll took
    overruns: int = 0                        # polls skipped: the previous one still ran
    retry_in_s: Optional[float] = None       # while failing: the wait before the next try


class _Schedule:
    """The loop-side state of one device: its timer, backoff, status, and whether it polls."""

    def __init__(self, device: PolledDevice, retry_max: float):
        self.device = device
        self.backoff = Backoff(device.interval, max(device.interval, retry_max))
        self.status = DeviceStatus()
        self.timer = None
        self.busy_since: Optional[float] = None   # monotonic time the running poll began
        self.due: float = 0.0                     # monotonic time of the next regular poll


class _Lane:
    """One worker thread polling, one after another, the devices it is handed."""

    def __init__(self, name: str, run_poll, log: logging.Logger):
        self.log = log
        self.jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, args=(run_poll,), name=name, daemon=True)
        self.devices: List[PolledDevice] = []

    def _work(self, run_poll) -> None:
        while True:
            schedule = self.jobs.get()
            if schedule is None:
                break
            run_poll(schedule)
        for device in self.devices:
            try:
                device.release()
            except Exception:   # a device that cannot close must not keep the others open
                self.log.exception("%s: closing failed", device.name)


class PollingListener(Listener):
    """A listener whose subclass implements ``poll()`` (one device) or ``devices()`` (several)."""

    SPEC = """
    interval = float(min=0.1, max=86400, default=10)
    retry_max = float(min=1, max=86400, default=300)
    """
    SAMPLE_COMMON = """
    # Settings every polled device (a meter, a sensor the gateway asks for readings) has:
    #   interval = 10        seconds between two polls of the device
    #   retry_max = 300      a failing device is asked again after interval, then twice as
    #                        long each time, up to this many seconds
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._schedules: Dict[str, _Schedule] = {}
        self._lanes: Dict[str, _Lane] = {}
        self._open = False
        self.poll_errors = LogThrottle(self.log, logging.WARNING, LOG_INTERVAL, schedule=self.loop.call_later)

    # -- what a subclass implements ---------------------------------------------------------
    def poll(self) -> Iterable[Union[Frame, RawFrame]]:
        """Read the device (blocking is fine, on a worker thread) and return its frames; raise
        PollError (or OSError) when there is no reading this time."""
        raise NotImplementedError

    def release(self) -> None:
        """Close what ``poll()`` opened; runs on the worker thread after the last poll."""

    def devices(self) -> Sequence[PolledDevice]:
        """The devices to poll; by default the listener itself, every ``interval`` seconds."""
        return [_ListenerDevice(self)]

    def frame(self, node, values: Sequence[Number], names: Optional[Sequence[str]] = None) -> Frame:
        """A frame read now, from this listener (safe on the worker thread)."""
        return Frame(node, tuple(values), time.time(), tuple(names) if names else None, None, self.name)

    # -- the listener contract ---------------------------------------------------------------
    def open(self) -> None:
        """Start the worker threads and poll every device once, at once. No device I/O here:
        that happens in ``poll()``, on a worker thread."""
        self._open = True
        for device in self.devices():
            schedule = _Schedule(device, self.settings["retry_max"])
            self._schedules[device.name] = schedule
            lane = self._lanes.get(device.lane)
            if lane is None:
                lane = self._lanes[device.lane] = _Lane(f"poll-{self.name}-{device.lane}"[:40], self._run_poll,
                                                        self.log)
                lane.thread.start()
            lane.devices.append(device)
            schedule.due = time.monotonic()
            self._start_poll(schedule)

    def close(self) -> None:
        """Stop polling at once. A poll that is blocked runs to its end on its thread; what it
        reads is dropped, and its devices are released there."""
        self._open = False
        for schedule in self._schedules.values():
            if schedule.timer is not None:
                schedule.timer.cancel()
                schedule.timer = None
        for lane in self._lanes.values():
            lane.jobs.put(None)
        self._lanes.clear()
        self.poll_errors.flush()
        super().close()

    @property
    def state(self) -> str:
        """``open``, or ``failing`` when no device gives readings."""
        statuses = [s.status for s in self._schedules.values()]
        return "failing" if statuses and all(s.retry_in_s is not None for s in statuses) else "open"

    def status_details(self) -> dict:
        """Per device: last good read (age), polls, errors, last error, latency."""
        now, mono = time.time(), time.monotonic()
        devices = {}
        for name, schedule in self._schedules.items():
            status = schedule.status
            devices[name] = {
                "state": ("polling" if schedule.busy_since is not None and mono - schedule.busy_since
                          > schedule.device.interval else "failing" if status.retry_in_s is not None else "ok"),
                "polls": status.polls, "errors": status.errors, "overruns": status.overruns,
                "last_good_read_age_s": None if status.last_good_read is None
                else round(max(0.0, now - status.last_good_read), 1),
                "latency_s": None if status.latency_s is None else round(status.latency_s, 4),
                "last_error": status.last_error, "retry_in_s": status.retry_in_s,
            }
        return {"devices": devices}

    # -- the schedule (loop thread) ----------------------------------------------------------
    def _start_poll(self, schedule: _Schedule) -> None:
        schedule.timer = None
        if not self._open:
            return
        if schedule.busy_since is not None:   # (the timer came back before the poll did)
            schedule.status.overruns += 1
            return
        schedule.busy_since = time.monotonic()
        self._lanes[schedule.device.lane].jobs.put(schedule)

    def _run_poll(self, schedule: _Schedule) -> None:
        """On the worker thread: poll, then hand the result to the loop thread."""
        started = time.monotonic()
        try:
            result = list(schedule.device.poll() or ())
        except Exception as exc:   # (judged on the loop thread, which logs and counts)
            result = exc
        took = time.monotonic() - started
        self.loop.call_soon_threadsafe(lambda: self._polled(schedule, result, took))

    def _polled(self, schedule: _Schedule, result, took: float) -> None:
        """On the loop thread: emit the frames, or count the failure, and schedule the next poll."""
        schedule.busy_since = None
        if not self._open or self._schedules.get(schedule.device.name) is not schedule:
            return   # closed (or re-created) while the poll ran: its reading is not ours to send
        status = schedule.status
        status.polls += 1
        status.latency_s = took
        if isinstance(result, BaseException):
            delay = self._failed(schedule, result)
        else:
            self._succeeded(schedule)
            for frame in result:
                self.emit(frame)
            delay = None
        now = time.monotonic()
        if delay is None:   # on the regular grid, skipping polls that a slow answer missed
            interval = schedule.device.interval
            schedule.due += interval * max(1, int((now - schedule.due) // interval) + 1)
            delay = schedule.due - now
        else:
            schedule.due = now + delay
        schedule.timer = self.loop.call_later(delay, lambda: self._start_poll(schedule))

    def _failed(self, schedule: _Schedule, exc: BaseException) -> float:
        status, name = schedule.status, schedule.device.name
        status.errors += 1
        why = str(exc) if isinstance(exc, PollError) else error_text(exc) if isinstance(exc, OSError) \
            else f"internal error: {type(exc).__name__}: {exc}"
        status.last_error = why
        delay = schedule.backoff.next()
        status.retry_in_s = delay
        if not isinstance(exc, (PollError, OSError)):
            self.log.error("%s: polling %s failed", self, name, exc_info=exc)
        elif schedule.backoff.failures == 1:
            self.log.warning("%s: %s: no reading (%s); asking again in %g s, then less often (every "
                             "%g s at most)", self, name, why, delay, schedule.backoff.cap)
        else:
            self.poll_errors("%s: %s: still no reading (%s)", self, name, why)
        return delay

    def _succeeded(self, schedule: _Schedule) -> None:
        status = schedule.status
        if schedule.backoff.failures:
            self.log.info("%s: %s answers again (after %d failed polls)", self, schedule.device.name,
                          schedule.backoff.failures)
        schedule.backoff.reset()
        status.retry_in_s = None
        status.last_good_read = time.time()
