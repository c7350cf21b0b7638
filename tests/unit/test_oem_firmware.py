"""The OEM serial firmware protocol: reading the board's lines, building its commands, and the
conversation that sets only what differs and saves only when something changed."""

from collections import deque

import pytest

from protocols.oem_firmware import (Calibration, CommandError, Configurator, Data, Ignored,
                                    Refusal, Report, Text, parse_line, same, tx_command,
                                    wanted_settings)
from tests.support.oem_boards import AvrdbBoard, Emon32Board, EmonPiCMBoard, RF12demoEmonPi, SilentBoard


def converse(board, config, chatter=()):
    """Run a conversation: write each Step's command to ``board``, feed back what it prints
    (``chatter``: readings the board prints meanwhile), and call timed_out() when it printed
    nothing that moved the conversation on. Returns (configurator, commands written)."""
    wanted, problems = wanted_settings(config)
    assert problems == []
    cfg = Configurator(wanted)
    written = []
    step = cfg.start()
    while step is not None:
        assert len(written) < 60, written
        written.append(step.command)
        pending = deque(list(chatter) + board.answer(step.command))
        step = None
        while pending:
            following = cfg.feed(parse_line(pending.popleft()))
            if following is not None:
                assert step is None, f"two commands at once after {written[-1]}"
                step = following
        if step is None and not cfg.done:
            step = cfg.timed_out()
    assert cfg.done
    return cfg, written


# -- the lines the boards print ---------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("firmware = emon_CM_6CT_temperature", Report(info={"firmware": "emon_CM_6CT_temperature"}, dialect="avrdb")),
    ("\rhardware = emonTx4", Report(info={"hardware": "emonTx4"})),
    ("vCal = 101.30", Report(values={"vcal1": (101.3, None)})),
    ("iCal1 = 100.00, iLead1 = 3.20", Report(values={"ical1": (100.0, 3.2)})),
    ("iCal12 = 20.00, iLead12 = 3.20", Report(values={"ical12": (20.0, 3.2)})),
    ("pulse = 3, pulsePeriod = 100ms", Report(values={"pulse": (True, 100)})),
    ("pulse = off", Report(values={"pulse": (False, None)})),
    ("RF = on, rfBand = 433 MHz, rfGroup = 210, rfNode = 17, rfPower = 25, rfFormat = LowPowerLabs",
     Report(values={"radio": True, "band": "433", "group": 210, "node": 17, "power": 25},
            info={"rf_format": "LowPowerLabs"})),
    ("RF = on, rfBand = 0 MHz, rfGroup = 210, rfNode = 17, rfPower = 25, rfFormat = LowPowerLabs",
     Report(values={"radio": True, "group": 210, "node": 17, "power": 25},
            info={"rf_format": "LowPowerLabs"})),    # 433.92 MHz, which emon_CM_6CT prints as 0
    ("rfBand = 433.92 MHz", Report(values={"band": "433.92"})),
    ("RF = off", Report(values={"radio": False})),
    ("datalog = 9.80", Report(values={"period": 9.8})),
    ("json = off", Report(values={"json": False}, marker="last")),
    ("assumedVrms = 240.00", Report(values={"assumed_v": 240.0})),
    ("freq = 60", Report(values={"acfreq": 60})),
    ("temp_enable = 1", Report(values={"temperature": True})),
    ("Loaded EEPROM config", Report(marker="boot")),
    ("Done. New config saved to EEPROM", Report(marker="saved")),
    ("Radio is handled by the Pi on the emonPi2", Refusal("Radio is handled by the Pi on the emonPi2")),
    # emon32
    ("hardware_rev = 3", Report(info={"hardware_rev": "3"}, dialect="emon32")),
    ("vCal2 = 100.00, vLead2 = 0.00, vActive2 = off", Report(values={"vcal2": (100.0, 0.0)}, dialect="emon32")),
    ("iCal4 = 50.00, iLead4 = 1.50, iActive4 = on, v1Chan4 = 2, v2Chan4 = 3",
     Report(values={"ical4": (50.0, 1.5)}, dialect="emon32", details={"ct4": (True, 2, 3)})),
    ("opa1 active = on, pulse = falling, pullUp = on, pulsePeriod = 50",
     Report(values={"pulse": (True, 50)}, dialect="emon32", details={"opa1": (True, "f", True, 50)})),
    ("opa2 active = off, onewire", Report(dialect="emon32", details={"opa2": (False, "o", None, None)})),
    ("> Mains frequency set to: 60", Report(values={"acfreq": 60})),
    ("Mains frequency (Hz):      50", Report(values={"acfreq": 50})),
    ("All settings saved.", Report(marker="end", dialect="emon32")),
    ("> No changes to save.", Report(marker="saved")),
    ("> Error: Node ID out of range (valid: 1-60).", Refusal("Node ID out of range (valid: 1-60).")),
    # the first avrdb listing
    ("Band 433 MHz, Group 210, Node 17, 7 dBm",
     Report(values={"band": "433", "group": 210, "node": 17, "power": 25})),
    ("JSON Format Off", Report(values={"json": False}, marker="end")),
    # readings, calibration, noise
    ("MSG:1523,Vrms:240.12,P1:1234,P2:0,P3:0,P4:0,P5:0,P6:0,E1:5678,T1:21.50,pulse:0", Data("keyvalue")),
    ('{"MSG":1523,"Vrms":240.12,"P1":1234}', Data("json")),
    ("OK 17 11 5 0 0 (-42)", Data("packet")),
    (",I1:0.512,I2:0.000,pf1:0.9876,pf2:0.0000", Calibration({"I1": 0.512, "I2": 0.0, "pf1": 0.9876, "pf2": 0.0})),
    ("\x01\x02garbage", Ignored("SOH")),
    ("", Ignored("empty")),
    ("Settings:", Text("Settings:")),
    ("vrefa = 1.0240", Text("vrefa = 1.0240")),
    ("AC present - Real Power calc enabled", Text("AC present - Real Power calc enabled")),
    ("4v", Text("4v")),
])
def test_lines_are_classified(line, expected):
    assert parse_line(line) == expected


def test_the_emonpicm_listing_and_the_old_config_line():
    terse = parse_line("Settings: r1 b4 p25 g210 i5 a240.00 ac1 f50.00 k0 268.97 0.00 "
                       "k1 90.90 4.20 k2 90.90 4.20 d9.80 m1 100 0 100 t0 0")
    assert terse.dialect == "emonpicm" and terse.marker == "end"
    assert terse.values == {"radio": True, "band": "433", "power": 25, "group": 210, "node": 5,
                            "assumed_v": 240.0, "acfreq": 50, "vcal1": (268.97, None),
                            "ical1": (90.9, 4.2), "ical2": (90.9, 4.2), "period": 9.8,
                            "pulse": (True, 100), "temperature": False}
    old = parse_line("[emonPi.2.90] E i5 g210 @ 433 MHz q0 USA 0 ")
    assert old.dialect == "rf12demo" and old.values == {"node": 5, "group": 210, "band": "433"}


def test_garbage_never_raises():
    for line in ("iCal1 = x", "RF = maybe", "Settings: r1 k0", "Settings: r1 m1", "k" * 5000,
                 "\xff\xfe", ",,,", "rfBand = 99 MHz", "{not json"):
        parse_line(line)


# -- the settings a config asks for -----------------------------------------------------------
def test_emonhubs_names_and_values_are_read():
    wanted, problems = wanted_settings({
        "group": "210", "baseid": "17", "frequency": "4", "period": "9.8", "vcal": "101.3",
        "ical1": ["100", "3.2"], "ical4": "20", "pubchannels": ["ToEmonCMS"], "nodename": "emonTx4",
        "Vrms": "240", "acfreq": "60", "pulse": "1", "pulse_period": "50", "json": "off"})
    assert problems == []
    assert wanted == {"group": 210, "node": 17, "band": "433", "period": 9.8,
                      "vcal1": (101.3, None), "ical1": (100.0, 3.2), "ical4": (20.0, None),
                      "assumed_v": 240.0, "acfreq": 60, "pulse": (True, 50), "json": False}
    assert wanted_settings({"m1": "100", "frequency": "433.92", "t0": "1"})[0] == \
        {"pulse": (True, 100), "band": "433.92", "temperature": True}


@pytest.mark.parametrize("key, value, message", [
    ("group", "300", "group = 300: expected a whole number 0-255"),
    ("baseid", "61", "baseid = 61: expected a whole number 1-60"),
    ("frequency", "434", "frequency = 434: expected 433, 433.92, 868 or 915"),
    ("acfreq", "55", "acfreq = 55: expected 50 or 60"),
    ("ical2", ["1", "2", "3"], "ical2 = 1, 2, 3: expected a calibration, or a calibration and a phase"),
    ("ical13", "100", "ical13: no such input"),
    ("json", "maybe", "json = maybe: expected on or off"),
    ("period", "nan", "period = nan: expected a number"),
])
def test_bad_settings_name_the_key(key, value, message):
    wanted, problems = wanted_settings({key: value})
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_values_compare_at_the_printed_decimals():
    assert same("vcal1", (101.3, None), (101.30, None))
    assert same("ical1", (100.0, None), (100.0, 3.2))          # phase not asked: any
    assert not same("ical1", (100.0, 2.0), (100.0, 3.2))
    assert same("period", 9.8, 9.80) and not same("period", 9.8, 9.9)
    assert same("pulse", (True, None), (True, 100)) and not same("pulse", (True, 50), (True, 100))
    assert same("pulse", (False, 50), (False, None))             # off: the period does not matter
    assert not same("group", 210, None)


# -- conversations ----------------------------------------------------------------------------
def test_a_board_that_has_the_settings_is_only_asked_for_them():
    board = AvrdbBoard(group=210, node=17, band="433")
    cfg, written = converse(board, {"group": "210", "baseid": "17", "frequency": "4",
                                    "vcal": "101.3", "ical1": ["100", "3.2"], "period": "9.8"})
    assert written == ["l"]
    assert board.saves == 0 and cfg.saved is None
    assert cfg.report()[0] == "board: emon_CM_6CT_temperature v1.7.0 on emonTx4"
    assert all(line.endswith("already") for line in cfg.report()[1:])


def test_only_the_differing_settings_are_sent_then_checked_then_saved_once():
    board = AvrdbBoard(group=200, band="433")
    cfg, written = converse(board, {"group": "210", "baseid": "17", "vcal": "101.3",
                                    "ical2": "60", "pulse_period": "50", "period": "10"},
                            chatter=[board.data_line()])
    assert written == ["l", "g210", "d10", "k2 60 3.2", "m1 50", "l", "s"]
    assert board.saves == 1 and board.eeprom["group"] == 210 and board.eeprom["ilead"][1] == 3.2
    assert cfg.saved is True and sorted(cfg.changed) == ["group", "ical2", "period", "pulse"]
    report = cfg.report()
    assert "group: 200 -> 210: set, sent g210 (board: group 210)" in report
    assert "node: 17 already" in report and report[-1] == "saved to the board's EEPROM"


def test_a_calibration_without_a_phase_keeps_the_boards_phase():
    board = AvrdbBoard(ilead=[2.5] * 6)
    _, written = converse(board, {"ical1": "90"})
    assert written[1] == "k1 90 2.5"          # emonhub would send "k1 90.00 0.00"
    assert board.s["ilead"][0] == 2.5


def test_settings_the_board_does_not_list_are_sent_but_do_not_save():
    board = AvrdbBoard()
    cfg, written = converse(board, {"acfreq": "60", "temperature": "0"})
    assert written == ["l", "f60", "t0", "l"]
    assert board.line_freq == 60 and board.saves == 0
    assert [o.result for o in cfg.outcomes.values()] == ["set", "set"]     # as their echoes say


def test_the_emonpi2_refusals_are_not_sent():
    board = AvrdbBoard(firmware="emon_CM_6CT", hardware="emonPi2")
    cfg, written = converse(board, {"radio": "1", "temperature": "1", "vcal": "100"})
    assert written == ["l", "k0 100", "l", "s"]
    assert cfg.outcomes["radio"].describe() == "radio: not sent: the emonPi2's radio is handled by the Pi"
    assert cfg.outcomes["temperature"].describe() == \
        "temperature: not sent: the emonPi2's temperature is handled by the Pi"


def test_433_92_mhz_only_where_the_firmware_has_it():
    cm = AvrdbBoard(band="433")
    cfg, written = converse(cm, {"frequency": "433.92"})
    assert written == ["l"] and "has no 433.92 MHz band command" in cfg.report()[1]
    db = AvrdbBoard(firmware="emon_DB_6CT", version="2.2.0", band="433")
    cfg, written = converse(db, {"frequency": "433.92"})
    assert written == ["l", "b49", "l", "s"]
    assert cfg.outcomes["band"].result == "set" and db.eeprom["band"] == "433.92"


def test_turning_the_radio_on_shows_its_settings_and_sends_only_what_differs():
    board = AvrdbBoard(rf_on=False, group=210, node=17, band="433")
    _, written = converse(board, {"radio": "1", "group": "210", "baseid": "18"})
    assert written == ["l", "w1", "n18", "l", "s"]


def test_a_db_12ct_board_takes_twelve_calibrations():
    board = AvrdbBoard(firmware="emon_DB_12CT", version="1.3.0")
    cfg, written = converse(board, {"ical12": ["25", "1"], "temperature": "1"})
    assert written == ["l", "k12 25 1", "l", "s"]
    assert cfg.outcomes["temperature"].result == "unsupported"


def test_the_first_avrdb_listing_is_understood():
    board = AvrdbBoard(listing_format="first", band="433", group=210)
    cfg, written = converse(board, {"group": "210", "ical1": ["100", "3.2"], "pulse": "1",
                                    "temperature": "1", "json": "1"})
    assert written == ["l", "j1", "l", "s"]
    assert cfg.board.dialect == "avrdb"
    assert cfg.outcomes["temperature"].result == "already"


class UnnamedAvrdb(AvrdbBoard):
    """The first avrdb firmware's ``l``: the settings without the firmware lines."""

    def answer(self, command):
        return self.calibration_lines() if command == "l" else super().answer(command)


def test_a_listing_without_firmware_lines_is_taken_for_avrdb():
    board = UnnamedAvrdb(listing_format="first", group=200)
    cfg, written = converse(board, {"group": "210"})
    assert written == ["l", "g210", "l", "s"] and cfg.board.dialect == "avrdb"


def test_emon32_gets_its_own_commands():
    board = Emon32Board()
    cfg, written = converse(board, {"ical1": ["90", "2"], "vcal2": "101", "frequency": "433",
                                    "acfreq": "60", "pulse_period": "50", "group": "211"})
    assert written == ["l", "lh", "x1", "g211", "f60", "k2 1 101 0", "k4 1 90 2 1 1",
                       "m1 1 r 0 50", "l", "lh", "s"]
    assert cfg.saved is True and board.saves == 1 and board.s["mains"] == 60
    assert cfg.report()[0] == "board: emon32 v1.4.2 on emonPi3"


def test_emon32_refusals_are_reported_in_its_words():
    board = Emon32Board()
    cfg, written = converse(board, {"vcal": "200"})
    assert written == ["l", "k1 1 200 0", "l"]
    assert cfg.outcomes["vcal1"].result == "refused"
    assert "board: vCal out of range (valid: 25-150)." in cfg.outcomes["vcal1"].describe()
    assert board.saves == 0


def test_emon32_pulses_need_a_pulse_input():
    board = Emon32Board(opa=[[False, "o", True, 0], [False, "o", True, 0], [False, "a", False, 0]])
    cfg, written = converse(board, {"pulse": "1"})
    assert written == ["l"] and "set up for OneWire" in cfg.outcomes["pulse"].reason


def test_emonpicm_is_silent_so_the_listing_tells_what_changed():
    board = EmonPiCMBoard()
    cfg, written = converse(board, {"group": "211", "ical1": "95", "temperature": "1", "json": "1"})
    assert written == ["l", "g211", "k1 95 4.2", "t0 1", "l", "s"]
    assert [o.result for o in cfg.outcomes.values()] == ["set", "set", "set", "unsupported"]
    assert board.saves == 1 and cfg.saved is True


def test_value_first_firmware_gets_value_first_commands_and_no_save():
    board = RF12demoEmonPi(node=5, group=200)
    cfg, written = converse(board, {"group": "210", "baseid": "5", "frequency": "868",
                                    "period": "10"})
    assert written == ["l", "8b", "210g"]
    assert (board.group, board.band) == (210, 868)
    assert cfg.outcomes["period"].result == "unsupported" and cfg.saved is None


def test_unknown_firmware_gets_emonhubs_4v_test_and_nothing_else():
    cfg, written = converse(SilentBoard(), {"group": "210"})
    assert written == ["l", "4v"] and cfg.recognised is False
    assert "not recognised" in cfg.report()[0]
    cfg, written = converse(SilentBoard(echo=True), {"group": "210"})
    assert written == ["l", "4v"] and cfg.recognised is False
    # a reading printed meanwhile is not an answer (emonhub would take it for one: "old")
    cfg, written = converse(SilentBoard(), {"group": "210"}, chatter=["MSG:1,Vrms:240.1,P1:5"])
    assert written == ["l", "4v"] and cfg.recognised is False


class QuietRF12demo(RF12demoEmonPi):
    """RF12demo that ignores ``l`` and answers ``4v`` with its banner."""

    def answer(self, command):
        return [] if command == "l" else super().answer(command)


def test_a_board_that_answers_4v_takes_value_first_commands():
    cfg, written = converse(QuietRF12demo(group=200), {"group": "210"})
    assert written == ["l", "4v", "210g"] and cfg.outcomes["group"].result == "set"


class DeafAvrdb(AvrdbBoard):
    """Answers ``l`` but ignores ``g`` (as if the line was lost)."""

    def answer(self, command):
        return [] if command.startswith("g") else super().answer(command)


def test_a_command_without_answer_is_reported_and_the_rest_go_on():
    board = DeafAvrdb(group=200, period=5.0)
    cfg, written = converse(board, {"group": "210", "period": "9.8"})
    assert written == ["l", "g210", "d9.8", "l", "s"]
    assert cfg.outcomes["group"].result == "not applied"
    assert cfg.outcomes["period"].result == "set"
    assert [o.setting for o in cfg.problems] == ["group"]


def test_data_and_calibration_lines_do_not_disturb_the_conversation():
    board = AvrdbBoard(group=200)
    _, written = converse(board, {"group": "210"},
                          chatter=[board.data_line(), ",I1:0.512,pf1:0.9876", "\x01", "{\"MSG\":1}"])
    assert written == ["l", "g210", "l", "s"]


def test_a_booting_board_says_so():
    board = AvrdbBoard()
    markers = [parse_line(line) for line in board.boot()]
    assert any(isinstance(m, Report) and m.marker == "boot" for m in markers)


# -- transmitting -----------------------------------------------------------------------------
def test_tx_lines_are_emonhubs():
    assert tx_command(0, [12, 34]) == "T0,12,34"
    assert tx_command(5, [255]) == "T5,255"
    for dest, payload, message in ((5, [], "1 to 60 bytes"), (5, [256], "256 is not a byte"),
                                   (300, [1], "destination 300"), (5, [True], "True is not a byte"),
                                   (5, [0] * 61, "not 61")):
        with pytest.raises(CommandError, match=message):
            tx_command(dest, payload)
