"""Stand-in for the ``spidev`` package: its SpiDev reaches the chip model (radio_model.py)."""

import radio_model


def SpiDev():   # noqa: N802 - the package's class name
    return radio_model.CHIP.spidev()
