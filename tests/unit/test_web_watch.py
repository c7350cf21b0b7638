"""What the page's Watch view is built on: the inputs' bounded history and the destinations'
state in words, with advice."""

import math

from gateway.web import history as history_module
from gateway.web.history import SLOTS, STEP, InputHistory
from gateway.web.watch import DeliveryRates, advice, destination_state

T0 = 1_700_000_000 - 1_700_000_000 % STEP   # the start of a minute


def test_each_minute_holds_the_mean_of_its_values():
    history = InputHistory()
    for second, power in ((0, 100), (10, 200), (20, 300), (60, 50)):
        history.record("10", {"power": power, "vrms": 240.5}, T0 + second)
    series = history.series(T0 + 60, minutes=3)["10"]
    assert series["start"] == T0 - 60 and series["step"] == STEP
    assert series["inputs"] == {"power": [None, 200, 50], "vrms": [None, 240.5, 240.5]}


def test_a_day_later_a_slot_holds_the_new_minute_only():
    history = InputHistory()
    history.record("10", {"power": 1}, T0)
    history.record("10", {"power": 2}, T0 + SLOTS * STEP)   # same slot, one day on
    assert history.series(T0 + SLOTS * STEP, minutes=1)["10"]["inputs"]["power"] == [2]
    assert history.series(T0 + SLOTS * STEP, minutes=SLOTS)["10"]["inputs"]["power"].count(None) == SLOTS - 1


def test_the_interval_is_the_gap_between_a_nodes_last_two_frames():
    history = InputHistory()
    history.record("10", {"a": 1}, T0)
    assert history.intervals() == {"10": None}
    history.record("10", {"a": 1}, T0 + 9.5)
    assert history.intervals() == {"10": 9.5}


def test_the_history_is_bounded():
    history = InputHistory()
    for node in range(history_module.MAX_NODES + 5):
        history.record(str(node), {f"in{i}": i for i in range(history_module.MAX_INPUTS + 5)}, T0)
    series = history.series(T0, minutes=1)
    assert len(series) == history_module.MAX_NODES and "0" not in series   # the least recent forgotten
    assert all(len(s["inputs"]) == history_module.MAX_INPUTS for s in series.values())
    per_node = SLOTS * (4 + 2) + history_module.MAX_INPUTS * SLOTS * 4
    assert history.nbytes() == history_module.MAX_NODES * per_node


def test_50_nodes_of_10_inputs_take_about_3_mib():
    history = InputHistory()
    for node in range(50):
        history.record(str(node), {f"in{i}": math.pi for i in range(10)}, T0)
    assert history.nbytes() == 50 * SLOTS * 6 + 500 * SLOTS * 4   # 3.3 MB (3.2 MiB)


def test_junk_values_are_not_recorded():
    history = InputHistory()
    history.record("10", {"a": float("nan"), "b": "x", "c": 1}, T0)
    assert history.series(T0, minutes=1)["10"]["inputs"] == {"a": [None], "b": [None], "c": [1]}


def buffer(**changes):
    entry = {"state": "ok", "queued": 0, "oldest_queued_age_s": None, "delivered": 10, "accepted": 10,
             "inactive_reason": None, "last_error": None}
    entry.update(changes)
    return entry


def test_destination_states_in_words():
    assert destination_state(buffer(), None)["words"] == "delivering"
    assert destination_state(buffer(delivered=0), None)["words"] == "ready: nothing to send yet"
    behind = destination_state(buffer(queued=600, oldest_queued_age_s=180), (12.0, 2.0))
    assert behind["level"] == "behind" and behind["words"] == "behind by 3 min, catching up: about 60 s left"
    assert behind["catch_up_s"] == 60
    stuck = destination_state(buffer(queued=600, oldest_queued_age_s=180), (1.0, 2.0))
    assert stuck["words"].startswith("behind by 3 min, not catching up yet")
    refused = destination_state(buffer(state="refused", queued=5, oldest_queued_age_s=60,
                                       last_error="emoncms refused the API key (401 Invalid API key)"), None)
    assert refused["level"] == "error" and "Setup > My Account" in refused["advice"]
    off = destination_state(buffer(state="inactive", inactive_reason="no apikey set (fill in ...)"), None)
    assert off["level"] == "off" and off["words"].startswith("not sending: no apikey set")


def test_advice_for_the_usual_delivery_errors():
    assert "is the server running" in advice("cannot connect to 127.0.0.1:9: connection refused")
    assert "not known" in advice("cannot connect to emoncms.orgg:443: no such host (name or service not known)")
    assert "check the url" in advice("emoncms answered 404 for http://x/emoncms/input/post: check the url")
    assert advice("something nobody has seen") is None and advice(None) is None


def test_rates_are_taken_between_status_requests():
    now = [100.0]
    rates = DeliveryRates(clock=lambda: now[0])
    assert rates.update({"e": buffer(delivered=0, accepted=0)}) == {}
    now[0] += 2
    assert rates.update({"e": buffer(delivered=20, accepted=4)}) == {"e": (10.0, 2.0)}
    now[0] += 0.5     # too soon: the last rates again
    assert rates.update({"e": buffer(delivered=21, accepted=4)}) == {"e": (10.0, 2.0)}
    assert rates.update({}) == {}
