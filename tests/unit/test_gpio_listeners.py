"""Pulse counting and digital inputs on GPIO lines, the libgpiod 2 module faked (no GPIO chip
exists here): pulses, bounces, restarts, lines that cannot be had, settings checked."""

import pytest

from listeners.gpio import GpioListener
from protocols.gpio_pins import Debouncer, GpioError
from listeners.pulse import PulseListener
from tests.support.fake_gpiod import FakeGpiod
from tests.support.gpiod_control import MS, past, pulse_train
from tests.support.loop_thread import LoopThread

def settings(**kw):
    base = dict(chip="/dev/gpiochip0", pin_numbering="bcm", bias="pull_down", active_low=False, debounce_ms=10.0,
                pin="17", nodename="pulse", input="pulse", rate_limit=0.0, save_interval=60.0, initial_total=0,
                nodelistonly=False, max_line=4096)
    base.update(kw)
    return base


def pulse_listener(loop, gpiod, tmp_path, name="gas", **kw):
    listener = PulseListener(name, settings(**kw), loop.loop, loop.emit, gpiod=gpiod)
    listener.gateway_dirs = (str(tmp_path / "run"), str(tmp_path / "state"))
    return listener


def totals(frames):
    return [f.values[0] for f in frames]


@pytest.fixture
def gpiod():
    fake = FakeGpiod()
    fake.add_chip("/dev/gpiochip0")
    return fake


def test_debouncer_counts_a_bouncing_contact_once():
    d = Debouncer(10 * MS, False)
    assert d.edge(True, 0) is None
    assert d.edge(False, 1 * MS) is None          # bounce: the high level held 1 ms
    assert d.edge(True, 2 * MS) is None
    assert d.edge(False, 50 * MS) is True         # the high level held 48 ms: it counts
    assert d.settle(55 * MS) is None              # low for 5 ms only, so far
    assert d.settle(60 * MS) is False


def test_pulses_are_counted_and_reported_as_a_total(gpiod, tmp_path):
    with LoopThread() as loop:
        listener = pulse_listener(loop, gpiod, tmp_path)
        loop.on_loop(listener.open)
        loop.wait_for(lambda f: totals(f) == [0], "the total at start")
        pulse_train(gpiod.chips["/dev/gpiochip0"], 17, 5, past())
        frames = loop.wait_for(lambda f: f and f[-1].values == (5,), "a total of 5")
        assert frames[-1].node == "pulse" and frames[-1].names == ("pulse",) and frames[-1].source == "gas"
        loop.on_loop(listener.close)


def test_bounces_do_not_count(gpiod, tmp_path):
    with LoopThread() as loop:
        listener = pulse_listener(loop, gpiod, tmp_path)
        loop.on_loop(listener.open)
        pulse_train(gpiod.chips["/dev/gpiochip0"], 17, 20, past(), bounces=3)
        loop.wait_for(lambda f: f and f[-1].values == (20,), "a total of 20")
        loop.on_loop(listener.close)
        status = listener.status_details()["devices"]["GPIO17"]
        assert status["pulses"] == 20 and status["total"] == 20 and status["bounces"] == 20 * 2 * 6
        assert status["polls"] == 20 and status["errors"] == 0 and status["state"] == "closed"


def test_an_active_low_pulse_output(gpiod, tmp_path):
    chip = gpiod.chips["/dev/gpiochip0"]
    chip.drive(17, True)                          # idle high, pulled up
    with LoopThread() as loop:
        listener = pulse_listener(loop, gpiod, tmp_path, active_low=True, bias="pull_up")
        loop.on_loop(listener.open)
        pulse_train(chip, 17, 3, past(), active_high=False)
        loop.wait_for(lambda f: f and f[-1].values == (3,), "a total of 3")
        loop.on_loop(listener.close)


def test_the_rate_limit_reports_the_latest_total_not_every_pulse(gpiod, tmp_path):
    with LoopThread() as loop:
        listener = pulse_listener(loop, gpiod, tmp_path, rate_limit=0.5)
        loop.on_loop(listener.open)
        loop.wait_for(lambda f: totals(f) == [0])
        pulse_train(gpiod.chips["/dev/gpiochip0"], 17, 30, past())
        frames = loop.wait_for(lambda f: f and f[-1].values == (30,), "a total of 30")
        loop.on_loop(listener.close)
        assert len(frames) <= 3                   # 0 at start, then at most two reports
        assert totals(frames) == sorted(totals(frames))


def test_a_restart_in_the_middle_of_counting_goes_on_from_the_total(gpiod, tmp_path):
    chip = gpiod.chips["/dev/gpiochip0"]
    with LoopThread() as loop:
        first = pulse_listener(loop, gpiod, tmp_path, initial_total=1000)
        loop.on_loop(first.open)
        pulse_train(chip, 17, 7, past())
        loop.wait_for(lambda f: f and f[-1].values == (1007,))
        loop.on_loop(first.close)
        second = pulse_listener(loop, gpiod, tmp_path, initial_total=1000)
        loop.on_loop(second.open)
        loop.wait_for(lambda f: f[-1].values == (1007,), "the saved total at start")
        pulse_train(chip, 17, 3, past(30))
        loop.wait_for(lambda f: f[-1].values == (1010,), "the total going on")
        loop.on_loop(second.close)


def test_digital_inputs_are_reported_on_change_and_periodically(gpiod, tmp_path):
    chip = gpiod.chips["/dev/gpiochip0"]
    chip.drive(22, True)
    with LoopThread() as loop:
        listener = GpioListener("digital", settings(pins=["15", "16"], pin_numbering="board", names=["defrost"],
                                                    invert=False, nodename="heatpump", interval=0.2),
                                loop.loop, loop.emit, gpiod=gpiod)
        loop.on_loop(listener.open)
        first = loop.wait_for(lambda f: len(f) >= 1)[0]
        assert first.node == "heatpump" and first.names == ("defrost", "pin16") and first.values == (1, 0)
        chip.drive(23, True, past())             # header pin 16 is GPIO23
        loop.wait_for(lambda f: f[-1].values == (1, 1), "the change")
        count = len(loop.frames)
        loop.wait_for(lambda f: len(f) >= count + 2, "two periodic reports")
        chip.drive(22, False)                    # a 1 ms blip: not a change
        chip.drive(22, True)
        loop.on_loop(listener.close)
        assert all(f.values == (1, 1) for f in loop.frames[count - 1:])


def test_invert_reports_a_low_line_as_1(gpiod):
    with LoopThread() as loop:
        listener = GpioListener("digital", settings(pins=["22"], names=[], invert=True, nodename="gpio", interval=0),
                                loop.loop, loop.emit, gpiod=gpiod)
        loop.on_loop(listener.open)
        assert loop.wait_for(lambda f: len(f) >= 1)[0].values == (1,)
        loop.on_loop(listener.close)


def test_a_line_another_program_holds_is_a_clear_error(gpiod, tmp_path):
    gpiod.chips["/dev/gpiochip0"].held_by_kernel.add(4)
    with LoopThread() as loop:
        listener = pulse_listener(loop, gpiod, tmp_path, pin="4")
        with pytest.raises(GpioError, match=r"cannot watch GPIO4 on /dev/gpiochip0: a driver or another program holds"):
            listener.open()
        listener.close()


def test_no_gpio_chip_is_a_clear_error(gpiod, tmp_path):
    with LoopThread() as loop:
        listener = pulse_listener(loop, gpiod, tmp_path, chip="/dev/gpiochip9")
        with pytest.raises(GpioError, match="no such GPIO chip"):
            listener.open()
        listener.close()


def test_without_the_gpiod_package_the_error_says_what_to_install(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_gpiod(name, *args, **kwargs):
        if name == "gpiod":
            raise ImportError("No module named 'gpiod'", name="gpiod")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gpiod)
    with LoopThread() as loop:
        listener = pulse_listener(loop, None, tmp_path)
        with pytest.raises(GpioError, match=r"gpiod package .* not installed: .*pip install 'gpiod>=2'"):
            listener.open()
        listener.close()


@pytest.mark.parametrize("cls, given, message", [
    (PulseListener, dict(pin="40"), "pin: GPIO40 is not on the Raspberry Pi's header"),
    (PulseListener, dict(pin="1", pin_numbering="board"), "pin: header pin 1 is 3.3 V, not a GPIO"),
    (PulseListener, dict(pin="x"), "pin: 'x' is not a pin number"),
    (PulseListener, dict(input="a b"), "input: input name 'a b'"),
    (GpioListener, dict(pins=["17", "17"]), "pins: GPIO17 is given twice"),
    (GpioListener, dict(pins=[]), "pins: no pin given"),
    (GpioListener, dict(pins=["17"], names=["a", "b"]), "names: 2 names for 1 pins"),
])
def test_settings_are_checked(cls, given, message):
    values = settings(pins=["17"], names=[], invert=False, interval=10.0, chip="auto")
    values.update(given)
    problems = cls.check_settings(values)
    assert any(message in p for p in problems), problems
