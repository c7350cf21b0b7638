"""GPIO lines on a Raspberry Pi through libgpiod 2 (the ``gpiod`` module), without a listener:
pin numbers (BCM, or the header's physical pins), finding the header's chip, importing the
optional module with a message that says what to install, what a refused request means, and
debouncing a line from its edge events' timestamps. The pulse and gpio listeners and the SPI
radio's driver use them."""

import errno
import glob
from typing import Dict, List, Optional, Sequence

HEADER_CHIP_LABELS = ("pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1", "pinctrl-bcm2712")
HEADER_GPIOS = range(0, 28)      # BCM GPIO 0-27 are on the 40-pin header of every Pi since the B+
# The Raspberry Pi's 40-pin header: physical pin -> BCM GPIO number (the gpiochip line offset).
HEADER_TO_BCM: Dict[int, int] = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}
_POWER_PINS = {1: "3.3 V", 17: "3.3 V", 2: "5 V", 4: "5 V", 6: "ground", 9: "ground",
               14: "ground", 20: "ground", 25: "ground", 30: "ground", 34: "ground", 39: "ground"}


class GpioError(OSError):
    """GPIO lines that cannot be had; the message says why and what to do. An OSError, so the
    gateway retries the listener (a package installed, a group joined) without a restart."""


def import_gpiod(error=GpioError):
    """The libgpiod 2 module; ``error`` saying what to install when it is missing or v1."""
    try:
        import gpiod
    except ImportError:
        raise error("the gpiod package (libgpiod 2 Python bindings) is not installed: "
                    "pip install 'gpiod>=2'") from None
    if not hasattr(gpiod, "request_lines"):
        raise error("the installed gpiod module is libgpiod 1.x (Debian's python3-libgpiod); "
                    "the gateway needs the 2.x bindings: pip install 'gpiod>=2'")
    return gpiod


def find_header_chip(gpiod, paths: Optional[Sequence[str]] = None) -> str:
    """The gpiochip device of the Raspberry Pi's header, found by its label (its number differs
    between models and kernels: gpiochip4 or gpiochip0 on a Pi 5); /dev/gpiochip0 if none is
    labelled so."""
    for path in sorted(glob.glob("/dev/gpiochip*")) if paths is None else paths:
        try:
            with gpiod.Chip(path) as chip:
                if chip.get_info().label in HEADER_CHIP_LABELS:
                    return path
        except (OSError, ValueError):
            continue
    return "/dev/gpiochip0"


def gpio_hint(exc: OSError, chip_key: str = "chip", busy: str = "1-wire, SPI or another listener?") -> str:
    """What an OSError from ``request_lines`` means for a person (``chip_key``: the setting that
    names the chip; ``busy``: who may hold a line)."""
    return {
        errno.ENOENT: f"no such GPIO chip (is this a Raspberry Pi? see {chip_key})",
        errno.ENODEV: f"not a GPIO chip device (see {chip_key})",
        errno.EACCES: "permission denied: add the user to the gpio group",
        errno.EPERM: "permission denied: add the user to the gpio group",
        errno.EBUSY: f"a driver or another program holds the line ({busy})",
        errno.EINVAL: "the chip has no such line (pins are BCM numbers here)",
    }.get(exc.errno, exc.strerror or str(exc))


def bcm_of_header_pin(pin: int) -> int:
    """The BCM GPIO number of physical header pin ``pin``; ValueError for power and ground pins."""
    if pin in HEADER_TO_BCM:
        return HEADER_TO_BCM[pin]
    if pin in _POWER_PINS:
        raise ValueError(f"header pin {pin} is {_POWER_PINS[pin]}, not a GPIO")
    raise ValueError(f"header pin {pin} does not exist (the Raspberry Pi header has pins 1-40)")


def bcm_pin(value, numbering: str, key: str = "pin") -> int:
    """The BCM GPIO number (line offset) of a configured pin; ValueError naming ``key``."""
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"{key}: {text!r} is not a pin number")
    if numbering == "board":
        try:
            return bcm_of_header_pin(int(text))
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return int(text)


def pin_problems(pins: Sequence, numbering: str, chip: str, key: str) -> List[str]:
    """Config problems of ``pins``: not numbers, not on the header (with chip = auto), twice."""
    problems, seen = [], set()
    for value in pins:
        try:
            pin = bcm_pin(value, numbering, key)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if chip == "auto" and numbering == "bcm" and pin not in HEADER_GPIOS:
            problems.append(f"{key}: GPIO{pin} is not on the Raspberry Pi's header (BCM GPIO 0-27; "
                            f"for the header's pin numbers set pin_numbering = board)")
        if pin in seen:
            problems.append(f"{key}: GPIO{pin} is given twice")
        seen.add(pin)
    return problems


class Debouncer:
    """One line's debounced level, from its edge events' timestamps (ns, monotonic).

    The level after an edge counts once it has held for ``period_ns``: known at the next edge
    (if that comes later than the period) or at ``settle()`` when the period has passed with
    no edge. A bouncing contact's burst of edges thus gives one change; a change shorter than
    the period gives none. (The kernel is asked to debounce too; this makes the result the same
    where it cannot.)
    """

    def __init__(self, period_ns: int, level: bool):
        self.period_ns = period_ns
        self.stable = level          # the debounced level
        self.level = level           # the level after the last edge
        self.last_edge_ns: Optional[int] = None
        self.stable_since_ns: Optional[int] = None   # the edge that began the debounced level

    def edge(self, active: bool, timestamp_ns: int) -> Optional[bool]:
        """Take an edge (``active``: the line's logical level after it); the new debounced level
        if the level before this edge had held long enough to count, else None."""
        changed = self.settle(timestamp_ns)
        self.level = active
        self.last_edge_ns = timestamp_ns
        return changed

    def settle(self, now_ns: int) -> Optional[bool]:
        """The new debounced level if the last edge's level has now held for the period."""
        if self.level == self.stable or self.last_edge_ns is None or now_ns - self.last_edge_ns < self.period_ns:
            return None
        self.stable = self.level
        self.stable_since_ns = self.last_edge_ns
        return self.stable

    def settles_at(self) -> Optional[int]:
        """When (ns) ``settle`` may give a change, or None when the level is stable."""
        return None if self.level == self.stable or self.last_edge_ns is None else self.last_edge_ns + self.period_ns
