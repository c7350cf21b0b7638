"""Stand-in for the libgpiod 2 ``gpiod`` package: the fake GPIO chip of radio_model.py."""

import radio_model

_GPIO = radio_model.GPIO
line = _GPIO.line
LineSettings = _GPIO.LineSettings
EdgeEvent = _GPIO.EdgeEvent
ChipInfo = _GPIO.ChipInfo
RequestReleasedError = _GPIO.RequestReleasedError
api_version = _GPIO.api_version
request_lines = _GPIO.request_lines
Chip = _GPIO.Chip
is_gpiochip_device = _GPIO.is_gpiochip_device
