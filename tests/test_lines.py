"""Bytes to lines: packet boundaries, line endings, oversized and non-UTF-8 lines."""

from hypothesis import given, strategies as st

from gateway.lines import BadLine, LineSplitter


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


def test_too_long_line_is_reported_once_and_the_next_line_survives():
    splitter = LineSplitter(max_line=16)
    out = feed_all(splitter, [b"1 " + b"9" * 40, b"9" * 40, b"99\n2 2\n"])
    assert [type(x) for x in out] == [BadLine, str]
    assert out[0].reason == "too long"
    assert out[1] == "2 2"


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


@given(st.lists(st.text(alphabet="0123456789 .-abc", max_size=30), max_size=20), st.data())
def test_chunking_never_changes_the_lines(lines, data):
    stream = "".join(line + "\n" for line in lines).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
    assert feed_all(LineSplitter(), chunks) == lines
