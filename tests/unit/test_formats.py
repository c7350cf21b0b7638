"""How readings are written as JSON: the shared compact encoder writes what json.dumps writes."""

import json

from hypothesis import given, strategies as st

from gateway.formats import compact_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=20)


@given(JSON_VALUES)
def test_compact_json_writes_what_json_dumps_writes(value):
    assert compact_json(value) == json.dumps(value, separators=(",", ":"))


def test_compact_json_refuses_what_json_refuses():
    for bad in (object(), {1, 2}, b"bytes"):
        try:
            compact_json([1, bad])
        except TypeError as exc:
            assert "not JSON serializable" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was encoded")
