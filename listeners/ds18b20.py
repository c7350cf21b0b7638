"""DS18B20 1-wire temperature sensors, read through the kernel's w1 sysfs.

Every ``interval`` seconds the listener lists the thermometers under ``w1_root`` and reads each
(about 750 ms per sensor while it converts: on the polling worker thread, never on the loop).
The good readings go out as one frame, ``<node> <name>=<°C> ...``; a failed CRC, the 85 °C
power-on value, -127 °C and garbled answers are dropped, counted per sensor and logged
(rate-limited). A sensor that vanishes from the bus, or comes back, is logged once each way.
``/status`` shows each sensor: last good read, errors by kind, how long its read took.

The kernel must have the bus: ``dtoverlay=w1-gpio,gpiopin=4`` in /boot/firmware/config.txt
(emonPi2: ``gpiopin=17``), with a 4k7 pull-up; w1-therm then loads by itself. With ``ids``
set, a bus without sensors is a failing poll (warned about, retried less and less often);
without, it is said once (emonhub's default configs list this listener for everyone).

Settings (``[[name]]`` with ``type = ds18b20``), defaults in brackets:

* ``ids`` [none] and ``names`` [none]: sensor ids (``28-000008e2db06``, as under
  /sys/bus/w1/devices) and their input names, by position, as emonhub writes them; a sensor
  not listed is reported under its id;
* ``nodename`` [sensors]: the node of the frame (as in emonhub);
* ``interval`` [10]: seconds between reads (emonhub's ``read_interval``);
* ``retry_max`` [300]: while no sensor gives a reading, the wait between tries doubles up to
  this many seconds;
* ``w1_root`` [/sys/bus/w1/devices]: where the kernel lists 1-wire devices (tests point it
  at a folder of their own);
* ``bulk_read`` [True]: start every sensor's conversion at once where the kernel offers it
  (``therm_bulk_read``, Linux 5.10+), so a poll waits ~750 ms in all, not ~750 ms per sensor;
  False for sensors on parasite power whose bus cannot feed them all at once;
* ``nodelistonly`` [False], as every listener.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from gateway.frame import FrameError, input_name_problem, parse_node
from gateway.logs import LogThrottle
from protocols import w1therm
from listeners.polling import LOG_INTERVAL, PollError, PollingListener


@dataclass
class SensorStatus:
    reads: int = 0
    errors: Dict[str, int] = field(default_factory=dict)   # by kind (w1therm.CRC, POWER_ON...)
    last_good_read: Optional[float] = None                 # wall-clock time
    last_error: Optional[str] = None
    latency_s: Optional[float] = None                      # how long its last read took
    present: bool = False
    failing: bool = False                                  # its last read gave no temperature

    @property
    def state(self) -> str:
        return "missing" if not self.present else "failing" if self.failing else "ok"


class DS18B20Listener(PollingListener):
    SPEC = """
    ids = force_list(default=list())
    names = force_list(default=list())
    nodename = string(default='sensors')
    w1_root = string(default='/sys/bus/w1/devices')
    bulk_read = boolean(default=True)
    """
    SAMPLE = """
    # DS18B20 temperature sensors on the Pi's 1-wire bus (dtoverlay=w1-gpio,gpiopin=4 in
    # config.txt; emonPi2: gpiopin=17), read off the loop (a conversion takes 750 ms); CRC
    # failures, the 85 C power-on value and -127 are dropped and counted.
    [[...]]
    # Sensor ids (as under /sys/bus/w1/devices: 28-000008e2db06, ...) and their
    # input names, by position; a sensor not listed is reported under its id.
    ids
    names
    nodename
    # Convert every sensor at once where the kernel can (one 750 ms wait per poll,
    # not one per sensor); False for sensors on parasite power.
    bulk_read
    w1_root
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.node = parse_node(self.settings["nodename"])
        self.names = w1therm.names_by_id(list(self.settings["ids"]), list(self.settings["names"]))
        self.presence = w1therm.SensorPresence(self.settings["ids"])
        self.sensors: Dict[str, SensorStatus] = {}
        self._lock = threading.Lock()   # sensors: written by the poll thread, read for /status
        self._said_empty = False
        # Logged from the poll thread: no loop timer, the summary comes with the next drop
        self.dropped = LogThrottle(self.log, logging.WARNING, LOG_INTERVAL)

    @classmethod
    def check_settings(cls, settings: dict) -> List[str]:
        problems = []
        ids, names = list(settings.get("ids") or []), list(settings.get("names") or [])
        for sensor_id in ids:
            problem = w1therm.sensor_id_problem(sensor_id)
            if problem:
                problems.append(f"ids: {problem}")
        if len(set(ids)) != len(ids):
            problems.append("ids: a sensor id is given twice")
        if len(names) > len(ids):
            problems.append(f"names: {len(names)} names for {len(ids)} ids (names go with ids, by position)")
        for name in names:
            if input_name_problem(name):
                problems.append(f"names: {input_name_problem(name)}")
        if len(set(names)) != len(names):
            problems.append("names: a name is given twice")
        try:
            parse_node(str(settings["nodename"]))
        except FrameError as exc:
            problems.append(f"nodename: {exc}")
        return problems

    # -- the worker thread --------------------------------------------------------------
    def poll(self):
        root = self.settings["w1_root"]
        found = w1therm.scan(root)
        self._note_presence(found)
        if not found:
            why = (f"no 1-wire thermometer under {root} (is the bus enabled: dtoverlay=w1-gpio,gpiopin=4 in "
                   f"config.txt? are the sensors wired with a 4k7 pull-up?)")
            if self.settings["ids"]:
                raise PollError(why)   # sensors are expected: failing, backed off, warned about
            if not self._said_empty:   # none listed (emonhub's default configs): said once
                self._said_empty = True
                self.log.info("%s: %s; read as soon as one is there", self, why)
            return []
        if self.settings["bulk_read"]:
            w1therm.trigger_bulk_read(root)
        names, values, failed = [], [], []
        for sensor_id in found:
            started = time.monotonic()
            try:
                celsius = w1therm.read_sensor(root, sensor_id)
            except w1therm.W1Error as exc:
                self._count_error(sensor_id, exc, time.monotonic() - started)
                failed.append(f"{self._label(sensor_id)}: {exc}")
                continue
            self._count_good(sensor_id, time.monotonic() - started)
            names.append(self.names.get(sensor_id, sensor_id))
            values.append(celsius)
        if failed:
            self.dropped("%s: readings dropped: %s", self, "; ".join(failed))
        if not values:
            raise PollError("no good reading: " + "; ".join(failed))
        return [self.frame(self.node, values, names)]

    def _label(self, sensor_id: str) -> str:
        name = self.names.get(sensor_id)
        return f"{sensor_id} ({name})" if name else sensor_id

    def _note_presence(self, found: List[str]) -> None:
        appeared, vanished = self.presence.update(found)
        with self._lock:
            for sensor_id in found:
                self.sensors.setdefault(sensor_id, SensorStatus()).present = True
            for sensor_id in vanished:
                self.sensors.setdefault(sensor_id, SensorStatus()).present = False
        for sensor_id in appeared:
            self.log.info("%s: sensor %s found on the bus", self, self._label(sensor_id))
        for sensor_id in vanished:
            never = self.sensors[sensor_id].reads == 0
            self.log.warning("%s: sensor %s is not on the bus%s", self, self._label(sensor_id),
                             " (listed in ids, not found)" if never else ": no readings from it until it is back")

    def _count_good(self, sensor_id: str, took: float) -> None:
        with self._lock:
            status = self.sensors.setdefault(sensor_id, SensorStatus())
            status.reads += 1
            status.last_good_read = time.time()
            status.latency_s = took
            status.failing = False

    def _count_error(self, sensor_id: str, exc: "w1therm.W1Error", took: float) -> None:
        with self._lock:
            status = self.sensors.setdefault(sensor_id, SensorStatus())
            status.reads += 1
            status.errors[exc.kind] = status.errors.get(exc.kind, 0) + 1
            status.last_error = str(exc)
            status.latency_s = took
            status.failing = True

    # -- /status ------------------------------------------------------------------------
    def close(self) -> None:
        super().close()
        self.dropped.flush()

    def status_details(self) -> dict:
        details = super().status_details()
        now = time.time()
        with self._lock:
            sensors = {sensor_id: (status, dict(status.errors)) for sensor_id, status in self.sensors.items()}
        for sensor_id, (status, errors) in sensors.items():
            details["devices"][self._label(sensor_id)] = {
                "state": status.state,
                "polls": status.reads, "errors": sum(errors.values()), "errors_by_kind": errors,
                "last_good_read_age_s": None if status.last_good_read is None
                else round(max(0.0, now - status.last_good_read), 1),
                "latency_s": None if status.latency_s is None else round(status.latency_s, 4),
                "last_error": status.last_error,
            }
        return details
