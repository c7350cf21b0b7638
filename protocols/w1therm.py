"""1-wire temperature sensors (DS18B20 and kin) through the kernel's w1 sysfs. Reads block.

The kernel's ``w1_therm`` driver gives each sensor a folder ``<root>/<id>`` (``28-000008e2db06``)
whose ``w1_slave`` file starts a conversion when read and answers, about 750 ms later, with the
scratchpad and its CRC check::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

``read_sensor`` turns that into degrees Celsius or a ``W1Error`` saying which of the known
failures it was; ``SensorPresence`` remembers which sensors are on the bus, so a sensor that
vanishes and comes back is reported once each way. Nothing here keeps time or threads: the
listener (``listeners.ds18b20``) calls these from its worker thread.
"""

import errno
import glob
import os
import re
from typing import Dict, Iterable, List, Optional, Set, Tuple

W1_ROOT = "/sys/bus/w1/devices"
# Family codes of the thermometers w1_therm drives: DS18S20, DS1822, DS18B20, DS1825/MAX31850, DS28EA00
FAMILIES = ("10", "22", "28", "3b", "42")
SENSOR_ID = re.compile(r"(%s)-[0-9a-f]{12}" % "|".join(FAMILIES))
POWER_ON_MILLI = 85000      # the scratchpad's reset value: no conversion happened (supply glitch)
NO_ANSWER_MILLI = -127000   # what some drivers and adapters give for a sensor that did not answer

# The kinds of bad read, as counted and shown in /status
CRC, POWER_ON, NO_ANSWER, GARBLED, GONE = "crc", "power_on_85", "no_answer", "garbled", "gone"


class W1Error(Exception):
    """A read that gave no temperature; ``kind`` is one of CRC, POWER_ON, NO_ANSWER, GARBLED, GONE."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def sensor_id_problem(sensor_id: str) -> Optional[str]:
    """Why ``sensor_id`` is not a 1-wire thermometer id (``28-000008e2db06``), or None."""
    if SENSOR_ID.fullmatch(sensor_id):
        return None
    if re.fullmatch(r"[0-9A-Fa-f]{2}-[0-9A-Fa-f]{12}", sensor_id) and SENSOR_ID.fullmatch(sensor_id.lower()):
        return f"{sensor_id!r} must be written in lower case, as the kernel names it: {sensor_id.lower()!r}"
    return (f"{sensor_id!r} is not a 1-wire thermometer id: the family code ({'/'.join(FAMILIES)}), '-' and "
            f"12 hex digits, as in /sys/bus/w1/devices (e.g. 28-000008e2db06)")


def scan(root: str) -> List[str]:
    """The thermometers the kernel lists under ``root`` now, sorted; [] if ``root`` is missing."""
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name for name in names if SENSOR_ID.fullmatch(name))


def trigger_bulk_read(root: str) -> int:
    """Start a conversion on every sensor of every bus at once, where the kernel offers it
    (``w1_bus_master*/therm_bulk_read``, Linux 5.10+); then each sensor's next read returns its
    result without converting again: one ~750 ms wait per poll instead of one per sensor.
    Returns how many buses were triggered (0: the sensors convert one by one as they are read)."""
    triggered = 0
    for path in sorted(glob.glob(os.path.join(root, "w1_bus_master*", "therm_bulk_read"))):
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write("trigger\n")
            triggered += 1
        except OSError:
            continue   # (an older driver, no permission): reading one by one still works
    return triggered


def parse_w1_slave(text: str) -> float:
    """Degrees Celsius from a ``w1_slave`` answer; W1Error for a failed CRC, the 85 °C power-on
    value, -127 °C, a scratchpad of zeros (a shorted bus passes the CRC) or anything else."""
    lines = text.strip().splitlines()
    if len(lines) != 2 or "crc=" not in lines[0] or "t=" not in lines[1]:
        raise W1Error(GARBLED, f"unexpected answer {text.strip()[:80]!r}")
    if not lines[0].rstrip().endswith("YES"):
        raise W1Error(CRC, "CRC check failed (noise on the bus, a long cable or a weak pull-up)")
    scratchpad = lines[0].split(":", 1)[0].split()
    if scratchpad and all(byte == "00" for byte in scratchpad):
        raise W1Error(NO_ANSWER, "scratchpad of zeros (the data line is held low: a short?)")
    try:
        milli = int(lines[1].rsplit("t=", 1)[1].strip())
    except ValueError:
        raise W1Error(GARBLED, f"unexpected temperature in {lines[1].strip()[:60]!r}") from None
    return _checked(milli)


def _checked(milli: int) -> float:
    if milli == POWER_ON_MILLI:
        raise W1Error(POWER_ON, "85 °C, the power-on value: the sensor had not converted (supply glitch)")
    if milli == NO_ANSWER_MILLI:
        raise W1Error(NO_ANSWER, "-127 °C: the sensor did not answer")
    if not -55000 <= milli <= 125000:
        raise W1Error(GARBLED, f"{milli / 1000:g} °C is outside the sensor's range (-55 to 125 °C)")
    return milli / 1000


def read_sensor(root: str, sensor_id: str) -> float:
    """Read one sensor (blocks ~750 ms while it converts): degrees Celsius, or W1Error.

    ``w1_slave`` is read where it exists, for its CRC line; a kernel without it gives
    ``temperature`` (m°C), which it has checked itself.
    """
    folder = os.path.join(root, sensor_id)
    try:
        with open(os.path.join(folder, "w1_slave"), encoding="ascii", errors="replace") as f:
            return parse_w1_slave(f.read())
    except FileNotFoundError:
        if not os.path.isdir(folder):
            raise W1Error(GONE, "no longer on the bus") from None
    except OSError as exc:
        raise _os_error(exc) from None
    try:
        with open(os.path.join(folder, "temperature"), encoding="ascii", errors="replace") as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise W1Error(GONE, "no longer on the bus") from None
    except OSError as exc:
        raise _os_error(exc) from None
    try:
        return _checked(int(text))
    except ValueError:
        raise W1Error(GARBLED, f"unexpected temperature {text[:40]!r}") from None


def _os_error(exc: OSError) -> W1Error:
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return W1Error(GONE, "no longer on the bus")
    if exc.errno == errno.EIO:
        return W1Error(CRC, "the kernel could not read it (EIO: CRC or bus error)")
    return W1Error(GARBLED, exc.strerror or str(exc))


class SensorPresence:
    """Which sensors are on the bus, and what changed since the last look.

    ``update(found)`` returns ``(appeared, vanished)``: each change once. Sensors ``expected``
    (listed in the config) that are missing at the first look come back as vanished, so the
    user hears about a sensor that was never found.
    """

    def __init__(self, expected: Iterable[str] = ()):
        self.expected: Set[str] = set(expected)
        self.present: Set[str] = set()
        self._first = True

    def update(self, found: Iterable[str]) -> Tuple[List[str], List[str]]:
        found = set(found)
        appeared = sorted(found - self.present)
        vanished = sorted((self.present | (self.expected if self._first else set())) - found)
        self.present = found
        self._first = False
        return appeared, vanished


def names_by_id(ids: List[str], names: List[str]) -> Dict[str, str]:
    """emonhub's ``ids`` and ``names`` matched by position; sensors without a name keep their id."""
    return {sensor_id: name for sensor_id, name in zip(ids, names)}
