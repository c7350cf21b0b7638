"""The frame parser: what it accepts, what it refuses, and that it never raises anything else."""

import math

import pytest
from hypothesis import given, strategies as st

from gateway.frame import Frame, FrameError, parse_values_line


@pytest.mark.parametrize("line, node, values", [
    ("14 15 26", 14, (15, 26)),
    ("0 1", 0, (1,)),
    ("255 -1 2.5 -0.25", 255, (-1, 2.5, -0.25)),
    ("emontx_1 230.1", "emontx_1", (230.1,)),
    ("my-node 1e3", "my-node", (1000.0,)),
    ("10\t1\t2", 10, (1, 2)),
    ("  10   1  ", 10, (1,)),
    ("5 +3 .5 7.", 5, (3, 0.5, 7.0)),
])
def test_valid_frames(line, node, values):
    assert parse_values_line(line) == (node, values)


def test_integers_stay_integers():
    _, values = parse_values_line("1 2 -3")
    assert all(type(v) is int for v in values)


@pytest.mark.parametrize("line, reason", [
    ("", "needs a node id"),
    ("14", "needs a node id and at least one value"),
    ("256 1", "out of range 0-255"),
    ("14 abc", "not a number"),
    ("14 nan", "not a number"),
    ("14 inf", "not a number"),
    ("14 1e999", "out of range"),
    ("14 0x1A", "not a number"),
    ("14 1,5", "not a number"),
    ("no*de 1", "neither a number"),
    ("-1 5", "out of range 0-255"),
    ("1.5 5", "out of range 0-255"),
    ("14 1_000", "not a number"),
    ("١٤ 1", "neither a number"),  # non-ASCII digits are not node ids
])
def test_invalid_frames_say_why(line, reason):
    with pytest.raises(FrameError, match=reason):
        parse_values_line(line)


def test_huge_integer_becomes_float_or_is_refused():
    _, values = parse_values_line("1 " + "9" * 30)
    assert values[0] == pytest.approx(1e30)
    with pytest.raises(FrameError):
        parse_values_line("1 " + "9" * 400)


@given(st.text(max_size=200))
def test_no_text_raises_anything_but_frame_error(line):
    try:
        node, values = parse_values_line(line)
    except FrameError:
        return
    assert values and all(math.isfinite(v) for v in values)
    assert (isinstance(node, int) and 0 <= node <= 255) or isinstance(node, str)


@given(st.integers(0, 255), st.lists(st.one_of(
    st.integers(-10 ** 15, 10 ** 15),
    st.floats(allow_nan=False, allow_infinity=False, width=64)), min_size=1, max_size=40))
def test_round_trip_of_formatted_values(node, values):
    line = " ".join([str(node)] + [repr(v) for v in values])
    parsed_node, parsed = parse_values_line(line)
    assert parsed_node == node
    assert list(parsed) == pytest.approx(values, rel=1e-15)


def test_named_values_default_to_positions():
    frame = Frame(10, (1, 2.5), 0.0, None, None, "s")
    assert frame.named_values() == {"1": 1, "2": 2.5}
    named = Frame(10, (1, 2.5), 0.0, ("power", "vrms"), None, "s")
    assert named.named_values() == {"power": 1, "vrms": 2.5}
