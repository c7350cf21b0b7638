"""Bytes to lines: packet boundaries, line endings, oversized and non-UTF-8 lines.

A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (many serial devices end lines with CR
only); ``\\r\\n`` is one ending even when the ``\\r`` and the ``\\n`` come in two reads.
"""

import re

import pytest
from hypothesis import given, strategies as st

from gateway.lines import BadLine, LineSplitter, split_first_line


def feed_all(splitter, chunks):
    out = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    return out


def test_crlf_and_lf_lines_split_across_packets():
    lines = feed_all(LineSplitter(), [b"14 15", b" 26\r", b"\n10 1\n11", b" 2\r\n"])
    assert lines == ["14 15 26", "10 1", "11 2"]


def test_many_lines_in_one_packet():
    assert feed_all(LineSplitter(), [b"1 1\n2 2\n3 3\n"]) == ["1 1", "2 2", "3 3"]


def test_a_lone_cr_ends_a_line():
    assert feed_all(LineSplitter(), [b"6 1 2\r6 3 4\r"]) == ["6 1 2", "6 3 4"]
    assert feed_all(LineSplitter(), [b"6 1 2\r", b"6 3 4\r", b"7 5\r"]) == ["6 1 2", "6 3 4", "7 5"]


def test_crlf_split_between_two_reads_is_one_line_end():
    splitter = LineSplitter()
    assert feed_all(splitter, [b"1 2\r"]) == ["1 2"]        # not held back waiting for a \n
    assert feed_all(splitter, [b"\n3 4\r"]) == ["3 4"]      # no empty line for the \n
    assert feed_all(splitter, [b"\n", b"\n"]) == [""]        # only the first \n completes the CR
    assert feed_all(splitter, [b"5 6\r", b"", b"\n7 8\n"]) == ["5 6", "7 8"]


def test_empty_lines_between_ends_are_kept_as_empty():
    assert feed_all(LineSplitter(), [b"\r\r\n\n1 1\r\r"]) == ["", "", "", "1 1", ""]


def test_too_long_line_is_reported_once_and_the_next_line_survives():
    splitter = LineSplitter(max_line=16)
    out = feed_all(splitter, [b"1 " + b"9" * 40, b"9" * 40, b"99\n2 2\n"])
    assert [type(x) for x in out] == [BadLine, str]
    assert out[0].reason == "too long"
    assert out[1] == "2 2"


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_too_long_line_ended_by_any_line_end(end):
    out = feed_all(LineSplitter(max_line=8), [b"1 " + b"9" * 20, b"9" * 20 + end + b"3 4" + end])
    assert [type(x) for x in out] == [BadLine, str] and out[1] == "3 4"


def test_too_long_line_in_one_chunk():
    out = feed_all(LineSplitter(max_line=8), [b"1 23456789012\n3 4\n"])
    assert isinstance(out[0], BadLine) and out[1] == "3 4"


def test_non_utf8_line_is_reported_and_the_next_line_survives():
    out = feed_all(LineSplitter(), [b"\xff\xfe 1\n5 6\n"])
    assert isinstance(out[0], BadLine) and out[0].reason == "not UTF-8"
    assert out[1] == "5 6"


def test_discard_partial_returns_the_half_line():
    splitter = LineSplitter()
    assert feed_all(splitter, [b"1 2\n3 "]) == ["1 2"]
    assert splitter.discard_partial() == b"3 "
    assert feed_all(splitter, [b"4 5\n"]) == ["4 5"]


def test_split_first_line():
    assert split_first_line(b"ab\r\ncd\n") == (b"ab", b"cd\n")
    assert split_first_line(b"ab\rcd\r") == (b"ab", b"cd\r")
    assert split_first_line(b"ab\ncd") == (b"ab", b"cd")
    assert split_first_line(b"abcd") == (b"abcd", None)


# -- properties ---------------------------------------------------------------------------
LINE_TEXT = st.text(alphabet="0123456789 .-abcé", max_size=30)
LINE_END = st.sampled_from(["\n", "\r", "\r\n"])


def unambiguous(pairs):
    """An empty line ended by \\n right after a line ended by \\r would be read as \\r\\n:
    end it with \\r\\n instead, so the expected lines are what the bytes say."""
    out = []
    for text, end in pairs:
        if out and out[-1][1] == "\r" and not text and end == "\n":
            end = "\r\n"
        out.append((text, end))
    return out


def chunked(data, stream: bytes):
    """``stream`` cut at points Hypothesis picks (possibly between a \\r and its \\n)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]


@given(st.lists(LINE_TEXT, max_size=20), st.data())
def test_chunking_never_changes_the_lines(lines, data):
    stream = "".join(line + "\n" for line in lines).encode()
    assert feed_all(LineSplitter(), chunked(data, stream)) == lines


@given(st.lists(st.tuples(LINE_TEXT, LINE_END), max_size=20), st.data())
def test_any_mix_of_line_ends_gives_the_same_lines_however_chunked(pairs, data):
    pairs = unambiguous(pairs)
    stream = "".join(text + end for text, end in pairs).encode()
    assert feed_all(LineSplitter(), chunked(data, stream)) == [text for text, _ in pairs]


@given(st.lists(st.tuples(st.binary(max_size=40), LINE_END), max_size=15), st.data())
def test_bounded_lines_of_any_bytes_survive_their_neighbours(pairs, data):
    """Whatever bytes a line holds (no line end), a line within max_line comes out as itself
    (or as 'not UTF-8'), a longer one as one 'too long', and the lines around it are intact."""
    pairs = unambiguous([(re.sub(rb"[\r\n]", b"x", raw), end) for raw, end in pairs])
    stream = b"".join(raw + end.encode() for raw, end in pairs)
    out = feed_all(LineSplitter(max_line=24), chunked(data, stream))
    expected = []
    for raw, _ in pairs:
        if len(raw) > 24:
            expected.append("too long")
        else:
            try:
                expected.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                expected.append("not UTF-8")
    assert [x.reason if isinstance(x, BadLine) else x for x in out] == expected
