"""A kernel w1 sysfs tree in a folder: sensors appear, answer, fail their CRC and vanish.

The folder stands where ``/sys/bus/w1/devices`` is; each sensor is ``<id>/w1_slave`` holding
what the kernel's w1_therm driver answers, so the gateway reads it exactly as on a Pi.
"""

import shutil
from pathlib import Path


def scratchpad(milli: int) -> str:
    """The nine scratchpad bytes w1_therm prints for a DS18B20 at ``milli`` m°C."""
    raw = round(milli / 62.5) & 0xFFFF
    data = [raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10]
    return " ".join(f"{b:02x}" for b in data + [_crc8(data)])


def _crc8(data) -> int:
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


class W1Bus:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "w1_bus_master1").mkdir(exist_ok=True)   # the kernel lists its master here too

    def set(self, sensor_id: str, milli: int, crc_ok: bool = True) -> None:
        """The sensor is on the bus and reads ``milli`` m°C (its CRC check as given)."""
        folder = self.root / sensor_id
        pad = scratchpad(milli)
        crc = pad.rsplit(" ", 1)[1]
        text = f"{pad} : crc={crc} {'YES' if crc_ok else 'NO'}\n{pad} t={milli}\n"
        if not folder.exists():   # a new sensor appears whole, as the kernel adds it: never a folder without w1_slave
            staging = self.root.parent / f".{sensor_id}.new"
            staging.mkdir(exist_ok=True)
            (staging / "w1_slave").write_text(text)
            staging.rename(folder)
            return
        tmp = folder / "w1_slave.tmp"
        tmp.write_text(text)
        tmp.replace(folder / "w1_slave")

    def remove(self, sensor_id: str) -> None:
        """The sensor is unplugged: the kernel removes its folder."""
        shutil.rmtree(self.root / sensor_id, ignore_errors=True)
