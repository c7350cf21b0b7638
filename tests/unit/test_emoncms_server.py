"""The fake emoncms answers as the real emoncms 11.16.8 did in the research document
(/work/shared/research/emoncms-api.md). Section numbers refer to that document."""

import json
import os
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.emoncms_server import READ_KEY, WRITE_KEY, FakeEmoncms, Row, SeenRequest

ROOT = Path(__file__).resolve().parents[2]
TEXT = "text/plain;charset=UTF-8"
HTML = "text/html; charset=UTF-8"
NO_DATA = b'{"success": false, "message": "Request contains no data via csv, json or data tag"}'
NOT_JSON_OBJECT = b'{"success": false, "message": "Input in not a valid JSON object"}'
CSV_NOT_NUMERIC = b'{"success": false, "message": "Format error: csv value is not numeric"}'
BULK_NOT_VALID = b'{"success": false, "message": "Format error, json string supplied is not valid"}'
BULK_LAST_ITEM = (b'{"success": false, "message": "Format error, last item in bulk data does not '
                  b'contain any data"}')


@pytest.fixture
def fake():
    server = FakeEmoncms().start()
    yield server
    server.stop()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


@contextmanager
def clock():
    """Yields a list that holds [before, after] server-clock bounds of the block."""
    bounds = [int(time.time())]
    yield bounds
    bounds.append(int(time.time()))


def get(http, fake, path, **params):
    params.setdefault("apikey", WRITE_KEY)
    return http.get(fake.url + path, params=params, timeout=10)


def post(http, fake, path, data, **kwargs):
    return http.post(fake.url + path, data=data, timeout=10, **kwargs)


def bearer(key=WRITE_KEY):
    return {"Authorization": "Bearer " + key}


def values(rows):
    return {(row.node, row.name): row.value for row in rows}


def assert_ok(response, body=b"ok"):
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["Content-Type"] == TEXT
    assert response.headers["Content-Length"] == str(len(body))


def assert_fatal(response, text):
    assert response.status_code == 200
    assert response.headers["Content-Type"] == HTML
    assert response.text.startswith("<br />\n<b>Fatal error</b>:  Uncaught ")
    assert text in response.text


# ----------------------------------------------------------------------------------------------
# §1 input/post
# ----------------------------------------------------------------------------------------------

def test_post_fulljson_get(fake, http):
    response = get(http, fake, "/input/post", node=10, fulljson='{"power1":100,"power2":200.5}')
    assert_ok(response, b'{"success": true}')
    assert response.headers["Content-Length"] == "17"
    assert values(fake.rows) == {("10", "power1"): 100.0, ("10", "power2"): 200.5}


def test_post_relaxed_json(fake, http):
    assert_ok(get(http, fake, "/input/post", node=11, json="{power1:100,power2:200}"))
    assert values(fake.rows) == {("11", "power1"): 100.0, ("11", "power2"): 200.0}


def test_post_csv_gives_inputs_1_2_3_at_server_time(fake, http):
    with clock() as bounds:
        assert_ok(get(http, fake, "/input/post", node=12, csv="1,2,3"))
    assert [(r.node, r.name, r.value) for r in fake.rows] == [("12", "1", 1.0), ("12", "2", 2.0), ("12", "3", 3.0)]
    assert all(bounds[0] <= r.time <= bounds[1] for r in fake.rows)


def test_post_time_param(fake, http):
    assert_ok(get(http, fake, "/input/post", node=13, csv="1,2,3", time=1700000000))
    assert {r.time for r in fake.rows} == {1700000000}


def test_post_bearer_header(fake, http):
    response = http.get(fake.url + "/input/post", params={"node": 14, "csv": "5,6"}, headers=bearer(), timeout=10)
    assert_ok(response)
    assert values(fake.rows) == {("14", "1"): 5.0, ("14", "2"): 6.0}


def test_post_form_fulljson_with_bearer(fake, http):
    assert_ok(post(http, fake, "/input/post", {"node": 15, "fulljson": '{"a":1.5,"b":-2}'}, headers=bearer()),
              b'{"success": true}')
    assert values(fake.rows) == {("15", "a"): 1.5, ("15", "b"): -2.0}


def test_post_form_csv_with_apikey_in_form(fake, http):
    assert_ok(post(http, fake, "/input/post", {"node": 16, "csv": "7,8", "apikey": WRITE_KEY}))
    assert values(fake.rows) == {("16", "1"): 7.0, ("16", "2"): 8.0}


def test_post_node_as_path_segment(fake, http):
    assert_ok(get(http, fake, "/input/post/emontx", csv="4,5"))
    assert {r.node for r in fake.rows} == {"emontx"}


def test_post_missing_node_is_node_0(fake, http):
    assert_ok(get(http, fake, "/input/post", csv="4"))
    assert fake.rows == [Row("0", "1", 4.0, fake.rows[0].time)]


def test_post_empty_node_is_node_0(fake, http):
    assert_ok(get(http, fake, "/input/post", node="", csv="4"))
    assert fake.rows[0].node == "0"


def test_post_node_is_sanitised(fake, http):
    assert_ok(get(http, fake, "/input/post", node="my node!@", csv="1"))
    assert fake.rows[0].node == "my node"


def test_post_fulljson_time_key_sets_time_and_is_not_an_input(fake, http):
    assert_ok(get(http, fake, "/input/post", node=20, fulljson='{"time":1700000100,"p":1}'), b'{"success": true}')
    assert fake.rows == [Row("20", "p", 1.0, 1700000100)]


def test_post_fulljson_iso_time_key(fake, http):
    get(http, fake, "/input/post", node=21, fulljson='{"time":"2023-11-14T22:15:00Z","p":1}')
    assert fake.rows == [Row("21", "p", 1.0, 1700000100)]


def test_post_iso_time_param(fake, http):
    assert_ok(get(http, fake, "/input/post", node=22, csv=1, time="2023-11-14T22:15:00Z"))
    assert fake.rows[0].time == 1700000100


def test_post_unparsable_time_is_server_time(fake, http):
    with clock() as bounds:
        assert_ok(get(http, fake, "/input/post", node=23, csv=1, time="abc"))
    assert bounds[0] <= fake.rows[0].time <= bounds[1]


def test_post_fractional_time_is_truncated(fake, http):
    assert_ok(get(http, fake, "/input/post", node=24, csv=1, time="1700000000.7"))
    assert fake.rows[0].time == 1700000000


def test_post_relaxed_json_time_key_is_an_input(fake, http):
    with clock() as bounds:
        assert_ok(get(http, fake, "/input/post", node="t1", json="{time:1700000000,p:1}"))
    assert values(fake.rows) == {("t1", "time"): 1700000000.0, ("t1", "p"): 1.0}
    assert all(bounds[0] <= r.time <= bounds[1] for r in fake.rows)


def test_post_json_request_body_is_ignored(fake, http):
    response = http.post(fake.url + "/input/post", json={"node": "t4", "fulljson": {"p": 1}},
                         headers=bearer(), timeout=10)
    assert_ok(response, NO_DATA)
    assert fake.rows == []


def test_post_form_body_wins_over_query(fake, http):
    response = http.post(fake.url + "/input/post", params={"node": "query", "csv": "1", "apikey": WRITE_KEY},
                         data={"node": "form", "csv": "2"}, timeout=10)
    assert_ok(response)
    assert (fake.rows[0].node, fake.rows[0].value) == ("form", 2.0)


def test_post_json_route_and_any_prefix(fake, http):
    assert_ok(get(http, fake, "/input/post.json", node="a", csv=1))
    assert_ok(get(http, fake, "/emoncms/input/post", node="b", csv=2))
    assert_ok(get(http, fake, "/emoncms/input/post.json", node="c", csv=3))
    assert_ok(get(http, fake, "/emoncms/input/bulk.json", data="[[0,\"d\",4]]"))
    assert [r.node for r in fake.rows] == ["a", "b", "c", "d"]


def test_post_data_precedence_json_fulljson_csv_data(fake, http):
    assert_ok(get(http, fake, "/input/post", node="n", csv="1", data="2"))
    assert_ok(get(http, fake, "/input/post", node="m", json="{x:5}", csv="1"))
    assert values(fake.rows) == {("n", "1"): 1.0, ("m", "x"): 5.0}


def test_post_fulljson_array_names_are_zero_based(fake, http):
    assert_ok(get(http, fake, "/input/post", node="arr", fulljson="[1,2]"), b'{"success": true}')
    assert values(fake.rows) == {("arr", "0"): 1.0, ("arr", "1"): 2.0}


def test_post_fulljson_values_cast_to_float(fake, http):
    doc = '{"s":"abc","n":null,"t":true,"f":false,"x":"12.5"}'
    assert_ok(get(http, fake, "/input/post", node="cast", fulljson=doc), b'{"success": true}')
    assert values(fake.rows) == {("cast", "s"): 0.0, ("cast", "n"): 0.0, ("cast", "t"): 1.0,
                                 ("cast", "f"): 0.0, ("cast", "x"): 12.5}


def test_post_fulljson_keys_are_sanitised(fake, http):
    assert_ok(get(http, fake, "/input/post", node="keys", fulljson='{"p w/r":1,"a:b":2,"":3}'),
              b'{"success": true}')
    assert [r.name for r in fake.rows] == ["p wr", "ab", ""]


def test_post_fulljson_time_param_beats_time_key_which_becomes_an_input(fake, http):
    get(http, fake, "/input/post", node="tp", fulljson='{"time":1700000100,"p":1}', time=1700000000)
    assert values(fake.rows) == {("tp", "time"): 1700000100.0, ("tp", "p"): 1.0}
    assert {r.time for r in fake.rows} == {1700000000}


def test_post_fulljson_capitalised_time_key_is_timestamp_and_input(fake, http):
    get(http, fake, "/input/post", node="tc", fulljson='{"Time":1700000100,"p":1}')
    assert fake.rows == [Row("tc", "Time", 1700000100.0, 1700000100), Row("tc", "p", 1.0, 1700000100)]


@pytest.mark.parametrize("relaxed, expected", [
    ('{"power1":100}', {"power1": 100.0}),
    ("1;2", {"1": 12.0}),
    ("+7", {"1": 7.0}),
    ("1e3", {"1": 1000.0}),
    ("null,5", {"1": 0.0, "2": 5.0}),
    ("a:null", {"a": 0.0}),
    ("1,x:2,3", {"1": 1.0, "x": 2.0, "2": 3.0}),
])
def test_post_relaxed_parsing(fake, http, relaxed, expected):
    assert_ok(get(http, fake, "/input/post", node="r", json=relaxed))
    assert {r.name: r.value for r in fake.rows} == expected


@pytest.mark.parametrize("field", ["csv", "data", "json"])
@pytest.mark.parametrize("bad", ["1,,3", "1,2,", "1,abc", "NAN,INF", "0x1A"])
def test_post_bad_element_rejects_whole_request(fake, http, field, bad):
    assert_ok(get(http, fake, "/input/post", node="bad", **{field: bad}), CSV_NOT_NUMERIC)
    assert fake.rows == [] and fake.node_count() == 0


@pytest.mark.parametrize("query", [{}, {"csv": ""}, {"node": "x"}])
def test_post_no_data(fake, http, query):
    assert_ok(get(http, fake, "/input/post", **query), NO_DATA)


@pytest.mark.parametrize("doc", ['{"a":1', '{"a":{"b":1}}', '{"a":[1]}', "5", '"x"', "null", "{a:1}", "NaN"])
def test_post_fulljson_invalid_or_nested(fake, http, doc):
    assert_ok(get(http, fake, "/input/post", node="fj", fulljson=doc), NOT_JSON_OBJECT)
    assert fake.rows == []


def test_post_json_value_not_numeric(fake, http):
    assert_ok(get(http, fake, "/input/post", node=1, json="{power1:abc}"),
              b'{"success": false, "message": "Format error, json value is not numeric"}')


def test_post_json_key_missing(fake, http):
    assert_ok(get(http, fake, "/input/post", node=1, json="{:5}"),
              b'{"success": false, "message": "Format error, json key missing or invalid character"}')


def test_post_3900_csv_values(fake, http):
    response = post(http, fake, "/input/post", {"node": "big", "csv": ",".join(["1.5"] * 3900), "apikey": WRITE_KEY})
    assert_ok(response)
    assert len(fake.rows) == 3900 and fake.rows[-1].name == "3900"


# ----------------------------------------------------------------------------------------------
# §2 input/bulk
# ----------------------------------------------------------------------------------------------

def test_bulk_legacy_mode_last_row_is_now(fake, http):
    with clock() as bounds:
        response = get(http, fake, "/input/bulk", data="[[0,50,1137],[2,51,1437,3164],[4,52,1412,3077]]")
    assert_ok(response)
    rows = fake.rows
    assert [(r.node, r.name, r.value) for r in rows] == [
        ("50", "1", 1137.0), ("51", "1", 1437.0), ("51", "2", 3164.0), ("52", "1", 1412.0), ("52", "2", 3077.0)]
    now = rows[-1].time
    assert bounds[0] <= now <= bounds[1]
    assert [r.time for r in rows] == [now - 4, now - 2, now - 2, now, now]


def test_bulk_offset_is_now_minus_offset(fake, http):
    with clock() as bounds:
        response = post(http, fake, "/input/bulk", {"data": "[[-10,53,1],[-8,54,2,3],[-6,55,4]]", "offset": "-10"},
                        headers=bearer())
    assert_ok(response)
    times = {r.node: r.time for r in fake.rows}
    assert bounds[0] <= times["53"] <= bounds[1]
    assert (times["54"], times["55"]) == (times["53"] + 2, times["53"] + 4)


def test_bulk_time_mode_and_last_row_wins(fake, http):
    assert_ok(post(http, fake, "/input/bulk.json",
                   {"data": "[[-10,56,1],[-6,56,2]]", "time": "1700000000", "apikey": WRITE_KEY}))
    assert fake.rows == [Row("56", "1", 1.0, 1699999990), Row("56", "1", 2.0, 1699999994)]
    assert get(http, fake, "/input/get/56/1").json() == {"time": 1699999994, "value": 2, "processList": ""}


def test_bulk_time_zero_counts_as_present(fake, http):
    assert_ok(get(http, fake, "/input/bulk", data="[[5,1,1]]", time=0))
    assert fake.rows[0].time == 5


def test_bulk_sentat(fake, http):
    with clock() as bounds:
        assert_ok(post(http, fake, "/input/bulk", {"data": "[[520,57,1],[535,58,2]]", "sentat": "543",
                                                   "apikey": WRITE_KEY}))
    times = {r.node: r.time for r in fake.rows}
    assert bounds[0] - 23 <= times["57"] <= bounds[1] - 23
    assert times["58"] == times["57"] + 15


def test_bulk_sentat_beats_offset_beats_time(fake, http):
    with clock() as bounds:
        get(http, fake, "/input/bulk", data="[[0,1,1]]", sentat=10, offset=100, time=5)
        get(http, fake, "/input/bulk", data="[[0,2,1]]", offset=100, time=5)
    times = {r.node: r.time for r in fake.rows}
    assert bounds[0] - 10 <= times["1"] <= bounds[1] - 10
    assert bounds[0] - 100 <= times["2"] <= bounds[1] - 100


def test_bulk_objects_are_named_inputs_without_using_a_position(fake, http):
    data = '[[0,59,{"power":10.5,"temp":21}],[0,"emontx2",3,{"x":4},5]]'
    assert_ok(post(http, fake, "/input/bulk", {"data": data, "time": "1700000500", "apikey": WRITE_KEY}))
    assert fake.rows == [Row("59", "power", 10.5, 1700000500), Row("59", "temp", 21.0, 1700000500),
                         Row("emontx2", "1", 3.0, 1700000500), Row("emontx2", "x", 4.0, 1700000500),
                         Row("emontx2", "2", 5.0, 1700000500)]


def test_bulk_fulljson_param_changes_success_body(fake, http):
    assert_ok(post(http, fake, "/input/bulk", {"data": "[[0,60,1]]", "fulljson": "1", "time": "1700000600",
                                               "apikey": WRITE_KEY}), b'{"success": true}')
    assert fake.rows == [Row("60", "1", 1.0, 1700000600)]


def test_bulk_cb_zlib_body_with_sentat(fake, http):
    gateway_clock = int(time.time()) - 100
    rows = [[gateway_clock - 20, "cbnode", {"power": 1.5, "rssi": -70}], [gateway_clock - 10, "cbnode", {"power": 2}]]
    with clock() as bounds:
        response = http.post(fake.url + "/input/bulk.json", params={"sentat": gateway_clock, "cb": 1},
                             data=zlib.compress(json.dumps(rows).encode()), headers=bearer(), timeout=10)
    assert_ok(response)
    assert [(r.name, r.value) for r in fake.rows] == [("power", 1.5), ("rssi", -70.0), ("power", 2.0)]
    assert bounds[0] - 10 <= fake.rows[-1].time <= bounds[1] - 10
    assert fake.rows[0].time == fake.rows[-1].time - 10


def test_bulk_cb_ignores_data_field(fake, http):
    response = http.post(fake.url + "/input/bulk", params={"cb": 1, "data": "[[0,1,1]]", "apikey": WRITE_KEY},
                         data=b"", timeout=10)
    assert_ok(response, BULK_NOT_VALID)


def test_bulk_c_hex_of_zlib(fake, http):
    data = zlib.compress(b'[[0,"hex",7]]').hex()
    assert_ok(get(http, fake, "/input/bulk", data=data, c=1, time=1700000000))
    assert fake.rows == [Row("hex", "1", 7.0, 1700000000)]


def test_bulk_rows_shorter_than_3_are_skipped(fake, http):
    assert_ok(get(http, fake, "/input/bulk", data="[[0,5]]"))
    assert_ok(get(http, fake, "/input/bulk", data="[[0],[1,5],[2,6,1]]", time=100))
    assert fake.rows == [Row("6", "1", 1.0, 102)]


def test_bulk_non_numeric_values_and_times_are_cast(fake, http):
    data = '[[0,64,"abc",null,"",true,"12.5"],["x",65,1],[" 5",66,1],[1.9,67,1]]'
    assert_ok(get(http, fake, "/input/bulk", data=data, time=1000))
    assert fake.rows[:5] == [Row("64", str(i), v, 1000) for i, v in enumerate([0.0, 0.0, 0.0, 1.0, 12.5], 1)]
    assert {r.node: r.time for r in fake.rows[5:]} == {"65": 1000, "66": 1005, "67": 1001}


def test_bulk_node_object_stops_processing_earlier_rows_stay(fake, http):
    response = post(http, fake, "/input/bulk", {"data": '[[0,61,1],[1,{"x":1},2],[2,62,3]]', "time": "1700000700",
                                                "apikey": WRITE_KEY})
    assert_ok(response, b'{"success": false, "message": "Format error, node must not be an object"}')
    assert fake.rows == [Row("61", "1", 1.0, 1700000700)]


@pytest.mark.parametrize("query", [{"data": "[[0,66,1],[1,67,2]"}, {"data": "[]"}, {}, {"data": ""},
                                   {"data": "null"}])
def test_bulk_not_valid_json(fake, http, query):
    assert_ok(get(http, fake, "/input/bulk", **query), BULK_NOT_VALID)
    assert fake.rows == []


@pytest.mark.parametrize("data", ["[[0,68,1],5]", "[[0,68,1],[]]", "[[0,68,1],[null,1,2]]", '[[0,68,1],""]'])
def test_bulk_last_item_without_data(fake, http, data):
    assert_ok(get(http, fake, "/input/bulk", data=data), BULK_LAST_ITEM)
    assert fake.rows == []


@pytest.mark.parametrize("data", ["zz", "abc"])
def test_bulk_c_bad_hex_warning_then_message(fake, http, data):
    response = get(http, fake, "/input/bulk", c=1, data=data)
    assert response.status_code == 200
    assert response.text.startswith("<br />\n<b>Warning</b>:  hex2bin(): ")
    assert response.text.endswith('{"success": false, "message": "Format error, compressed hex not valid"}')


def test_bulk_cb_not_zlib(fake, http):
    response = http.post(fake.url + "/input/bulk?cb=1", data=b"[[0,1,1]]", headers=bearer(), timeout=10)
    assert_ok(response, BULK_NOT_VALID)


def test_bulk_array_value_is_fatal_error_after_earlier_rows(fake, http):
    response = get(http, fake, "/input/bulk", data='[[0,63],[1,64,"abc",null,"",true,"12.5"],[2,65,[1,2]]]')
    assert_fatal(response, "Uncaught TypeError: strlen(): Argument #1 ($string) must be of type string, "
                           "array given in /var/www/emoncms/Modules/input/input_methods.php:292")
    assert {r.node for r in fake.rows} == {"64"}


@pytest.mark.parametrize("data, text", [
    ("[5,[0,68,1]]", "TypeError"),
    ('[{"a":1}]', "Cannot use object of type stdClass as array"),
    ('{"a":1}', "TypeError"),
])
def test_bulk_non_array_rows_are_fatal(fake, http, data, text):
    assert_fatal(get(http, fake, "/input/bulk", data=data), text)
    assert fake.rows == []


# ----------------------------------------------------------------------------------------------
# §3 errors: API keys, limits, crashes
# ----------------------------------------------------------------------------------------------

def assert_unauthorized(response):
    assert response.status_code == 401
    assert response.content == b"Invalid API key"
    assert response.headers["Content-Type"] == HTML
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="API KEY", error="invalid_apikey", error_description="Invalid API key"')


@pytest.mark.parametrize("key", ["f" * 32, "notakey", WRITE_KEY + "\n", WRITE_KEY[:-1], WRITE_KEY + "0"])
def test_invalid_key_in_query_is_401(fake, http, key):
    """§3 "unknown 32-hex key | 401 | Invalid API key", and keys that are not 32 hex chars."""
    assert_unauthorized(get(http, fake, "/input/post", node=1, csv=1, apikey=key))
    assert_unauthorized(get(http, fake, "/input/bulk", data="[[0,1,1]]", apikey=key))
    assert fake.rows == []


def test_invalid_key_in_bearer_header_is_401(fake, http):
    response = http.get(fake.url + "/input/post", params={"csv": 1}, headers=bearer("f" * 32), timeout=10)
    assert_unauthorized(response)


def test_lowercase_bearer_is_401(fake, http):
    response = http.get(fake.url + "/input/post", params={"csv": 1},
                        headers={"Authorization": "bearer " + WRITE_KEY}, timeout=10)
    assert_unauthorized(response)


def test_bare_key_in_authorization_header_works(fake, http):
    response = http.get(fake.url + "/input/post", params={"csv": 1}, headers={"Authorization": WRITE_KEY}, timeout=10)
    assert_ok(response)


def test_query_key_wins_over_valid_bearer(fake, http):
    response = http.get(fake.url + "/input/post", params={"csv": 1, "apikey": "f" * 32}, headers=bearer(), timeout=10)
    assert_unauthorized(response)
    assert fake.rows == []


def test_query_key_wins_over_form_key(fake, http):
    response = http.post(fake.url + "/input/post", params={"apikey": READ_KEY}, data={"apikey": WRITE_KEY, "csv": 1},
                         timeout=10)
    assert response.content == b"" and fake.rows == []


def test_upper_case_key_works(fake, http):
    assert_ok(get(http, fake, "/input/post", csv=1, apikey=WRITE_KEY.upper()))


@pytest.mark.parametrize("path, query", [("/input/post", {"csv": "1"}), ("/input/bulk", {"data": "[[0,1,1]]"})])
@pytest.mark.parametrize("key", [READ_KEY, None, ""])
def test_read_key_or_no_key_is_empty_200_nothing_stored(fake, http, path, query, key):
    """§3 "read key on input/post or input/bulk | 200 | empty": easy to take for a success."""
    if key is not None:
        query = dict(query, apikey=key)
    response = http.get(fake.url + path, params=query, timeout=10)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "0"
    assert fake.rows == []


def test_33rd_node_is_refused(fake, http):
    for node in range(32):
        assert_ok(get(http, fake, "/input/post", node="lim%d" % node, csv=1))
    assert_ok(get(http, fake, "/input/post", node="lim5", csv=2))   # existing nodes still accepted
    response = get(http, fake, "/input/post", node="lim24x", csv=1)
    assert_ok(response, b'{"success": false, "message": "Error: Reached the maximal allowed number of different '
                        b'NodeIds, limit is 32. Node \'lim24x\' was ignored."}')
    assert fake.node_count() == 32 and len(fake.rows) == 33


def test_new_node_beyond_limit_stops_bulk(http):
    with FakeEmoncms(max_nodes=2) as fake:
        response = get(http, fake, "/input/bulk", data="[[0,1,1],[0,2,2],[0,3,3],[0,1,4]]", time=10)
        assert_ok(response, b'{"success": false, "message": "Error: Reached the maximal allowed number of '
                            b'different NodeIds, limit is 2. Node \'3\' was ignored."}')
        assert [r.value for r in fake.rows] == [1.0, 2.0]


def test_time_in_milliseconds_is_fatal_error(fake, http):
    response = get(http, fake, "/input/post", node="ms", csv=1, time=1700000000000)
    assert_fatal(response, "Uncaught mysqli_sql_exception: Out of range value for column 'time'")
    assert fake.rows == []
    assert fake.node_count() == 1   # the input was created, without a value
    assert get(http, fake, "/input/get/ms/1").json() == {"time": None, "value": None, "processList": ""}


def test_bulk_time_in_milliseconds_is_fatal_error(fake, http):
    response = get(http, fake, "/input/bulk", data="[[0,1,1]]", time=1700000000000)
    assert_fatal(response, "Out of range value for column 'time'")


@pytest.mark.parametrize("query", [{"csv": "1e40"}, {"fulljson": '{"a":1e400}'}, {"json": "{a:-1e39}"}])
def test_value_beyond_float_range_is_fatal_error(fake, http, query):
    response = get(http, fake, "/input/post", node="big", **query)
    assert_fatal(response, "Uncaught mysqli_sql_exception: Out of range value for column 'value'")
    assert fake.rows == []


def test_out_of_range_value_keeps_earlier_values_of_the_same_post(fake, http):
    assert_fatal(get(http, fake, "/input/post", node="p", csv="1,1e40,3"), "column 'value'")
    assert values(fake.rows) == {("p", "1"): 1.0}


def test_url_over_8190_bytes_is_414(fake, http):
    """§3 "URL of ~9 KB (GET) | 414": Apache's LimitRequestLine, before emoncms runs."""
    response = get(http, fake, "/input/post", node=1, csv=",".join(["1"] * 4200))
    assert response.status_code == 414
    assert "Request-URI Too Long" in response.text
    assert fake.rows == []


def test_url_just_under_the_limit_works(fake, http):
    fixed = len("GET /input/post?node=1&apikey=%s&csv= HTTP/1.1" % WRITE_KEY)
    csv = ("1," * 5000)[: 8190 - fixed - 1] + "1"
    assert not csv.endswith(",,")
    response = http.get("%s/input/post?node=1&apikey=%s&csv=%s" % (fake.url, WRITE_KEY, csv), timeout=10)
    assert response.status_code == 200


def test_post_body_over_8mb_is_dropped(fake, http):
    """§3 "POST body > 8 MB": PHP drops it silently; bulk then says the JSON is not valid."""
    padding = "x" * (8 * 1024 * 1024)
    response = post(http, fake, "/input/post", {"node": 1, "csv": "1", "pad": padding}, headers=bearer())
    assert_ok(response, NO_DATA)
    response = post(http, fake, "/input/bulk", {"data": "[[0,1,1]]", "pad": padding}, headers=bearer())
    assert_ok(response, BULK_NOT_VALID)
    response = post(http, fake, "/input/post", {"node": 1, "csv": "1", "apikey": WRITE_KEY, "pad": padding})
    assert response.status_code == 200 and response.content == b""
    assert fake.rows == []


# ----------------------------------------------------------------------------------------------
# §7 refusals inside a bulk upload (measured on the real server with a wire log)
# ----------------------------------------------------------------------------------------------

NODE_LIMIT = ("{\"success\": false, \"message\": \"Error: Reached the maximal allowed number of different "
              "NodeIds, limit is %d. Node '%s' was ignored.\"}")


def test_rows_before_a_refused_node_are_stored_and_processed_the_rest_untouched(http):
    """§7 "The 33rd node id": the answer names the node; rows in front of it were stored and
    ran their input processes, rows behind it were not touched."""
    with FakeEmoncms(max_nodes=2) as fake:
        fake.add_accumulator("1", "1")
        data = json.dumps([[100, 1, 1], [101, 1, 1], [102, 2, 5], [103, 3, 7], [104, 1, 1]])
        response = post(http, fake, "/input/bulk", {"data": data, "time": "0"}, headers=bearer())
        assert_ok(response, (NODE_LIMIT % (2, "3")).encode())
        assert [(r.node, r.time) for r in fake.rows] == [("1", 100), ("1", 101), ("2", 102)]
        assert fake.accumulated("1", "1") == 2
        assert fake.node_count() == 2


def test_a_row_sent_again_is_processed_again(fake, http):
    """§7 "Re-sending stored rows corrupts non-idempotent processes": emoncms keeps no memory
    of what it stored; the same row twice adds twice (log-to-feed would hide it)."""
    fake.add_accumulator("acc", "1")
    for _ in range(2):
        assert_ok(post(http, fake, "/input/bulk", {"data": "[[1700000000,\"acc\",1]]", "time": "0"},
                       headers=bearer()))
    assert fake.accumulated("acc", "1") == 2
    assert values(fake.rows) == {("acc", "1"): 1.0}


def test_a_crashing_row_runs_no_process_but_keeps_the_values_written_before_the_crash(fake, http):
    """§7 "Out-of-range values" (processing stops at that row) and process_node() in
    input_methods.php: values are written first, processes run after the whole row."""
    fake.add_accumulator("p", "1")
    data = json.dumps([[100, "p", 1], [101, "p", 1, 1e39], [102, "p", 1]])
    response = post(http, fake, "/input/bulk", {"data": data, "time": "0"}, headers=bearer())
    assert_fatal(response, "Out of range value for column 'value'")
    assert [(r.name, r.time) for r in fake.rows] == [("1", 100), ("1", 101)]
    assert fake.accumulated("p", "1") == 1


@pytest.mark.parametrize("value, stored", [(3.4028234663852886e38, True), (3.40282347e38, False),
                                           (3.40283e38, False), (1e39, False), (-3.4028235e38, False),
                                           (1e-300, True)])
def test_float_range_boundary(fake, http, value, stored):
    """§7 "Out-of-range values": 3.40283e38 and 1e39 crash, 3.4028234e38 is accepted; measured
    on the same server: FLT_MAX itself is stored, the next double up crashes, 1e-300 is stored."""
    response = post(http, fake, "/input/post", {"node": "f", "fulljson": json.dumps({"a": value})},
                    headers=bearer())
    if stored:
        assert_ok(response, b'{"success": true}')
    else:
        assert_fatal(response, "Out of range value for column 'value'")
    assert len(fake.rows) == int(stored)


def test_database_down_is_a_fatal_error_page_on_every_request(fake, http):
    """§7 "Database down": every request answers 200 with PHP's Fatal error page, nothing is
    stored; the same request works again once the database is back."""
    fake.set_mode("db_down")
    for response in (post(http, fake, "/input/bulk", {"data": "[[0,1,1]]"}, headers=bearer()),
                     get(http, fake, "/input/post", node=1, csv=1), http.get(fake.url + "/version", timeout=10)):
        assert_fatal(response, "Uncaught mysqli_sql_exception: Access denied for user 'emoncms'@'localhost'")
    assert fake.rows == []
    fake.set_mode("ok")
    assert_ok(post(http, fake, "/input/bulk", {"data": "[[0,1,1]]"}, headers=bearer()))


# ----------------------------------------------------------------------------------------------
# §4 reading back, version, clean
# ----------------------------------------------------------------------------------------------

def test_input_get_shapes(fake, http):
    get(http, fake, "/input/post", node=5, csv="7,8", time=1700000010)
    get(http, fake, "/input/post", node="emontx", fulljson='{"power1":100.5,"temp":21.25}', time=1700000000)
    entry = {"time": 1700000000, "value": 100.5, "processList": ""}
    all_nodes = get(http, fake, "/input/get", apikey=READ_KEY)
    assert all_nodes.headers["Content-Type"] == "application/json"
    assert all_nodes.text == (
        '{"5":{"1":{"time":1700000010,"value":7,"processList":""},"2":{"time":1700000010,"value":8,"processList":""}},'
        '"emontx":{"power1":{"time":1700000000,"value":100.5,"processList":""},'
        '"temp":{"time":1700000000,"value":21.25,"processList":""}}}')
    assert get(http, fake, "/input/get.json", apikey=READ_KEY).text == all_nodes.text
    node = {"power1": entry, "temp": {"time": 1700000000, "value": 21.25, "processList": ""}}
    assert get(http, fake, "/input/get/emontx", apikey=READ_KEY).json() == node
    assert get(http, fake, "/input/get", node="emontx", apikey=READ_KEY).json() == node
    assert get(http, fake, "/input/get/emontx/power1", apikey=READ_KEY).json() == entry
    assert get(http, fake, "/input/get", node="emontx", name="power1").json() == entry
    assert get(http, fake, "/input/get/nonode", apikey=READ_KEY).text == '"Node does not exist"'
    assert get(http, fake, "/input/get/emontx/nope", apikey=READ_KEY).text == '"Node variable does not exist"'
    no_key = http.get(fake.url + "/input/get", timeout=10)
    assert (no_key.status_code, no_key.text) == (200, "false")


def test_input_get_shows_mysql_float_precision(fake, http):
    get(http, fake, "/input/post", node="prec", csv="123456789.123,3.14159265,230.1,0.000001234")
    assert [r.value for r in fake.rows] == [123456789.123, 3.14159265, 230.1, 0.000001234]
    got = get(http, fake, "/input/get/prec").json()
    assert [got[name]["value"] for name in "1234"] == [123457000, 3.14159, 230.1, 1.234e-06]


def test_version(fake, http):
    response = http.get(fake.url + "/version", timeout=10)
    assert (response.status_code, response.text, response.headers["Content-Type"]) == (200, "11.16.8", TEXT)
    assert http.get(fake.url + "/emoncms/version", timeout=10).text == "11.16.8"


def test_input_clean(fake, http):
    get(http, fake, "/input/post", node=1, csv="1,2,3")
    assert get(http, fake, "/input/clean", apikey=READ_KEY).text == "false"
    response = get(http, fake, "/input/clean")
    assert response.text == "Deleted 3 inputs"
    assert fake.rows == [] and fake.node_count() == 0


@pytest.mark.parametrize("path", ["/", "/feed/list.json", "/input/nothing", "/input", "/emoncms/user/login"])
def test_other_routes_are_404(fake, http, path):
    assert http.get(fake.url + path, timeout=10).status_code == 404


# ----------------------------------------------------------------------------------------------
# The fake's own interface: modes, waiting, bookkeeping
# ----------------------------------------------------------------------------------------------

def test_keep_alive_and_content_length(fake, http):
    for value in range(3):
        response = get(http, fake, "/input/post", node=1, csv=value)
        assert response.headers["Content-Length"] == "2"
        assert "close" not in response.headers.get("Connection", "")
    assert len(fake.rows) == 3


def test_requests_seen(fake, http):
    get(http, fake, "/input/post", csv=1)
    http.get(fake.url + "/nope", timeout=10)
    assert fake.requests_seen == [SeenRequest("GET", "/input/post", 200), ("GET", "/nope", 404)]


def test_mode_error500(fake, http):
    fake.set_mode("error500")
    response = get(http, fake, "/input/post", csv=1)
    assert (response.status_code, response.content) == (500, b"")
    fake.set_mode("ok")
    assert_ok(get(http, fake, "/input/post", csv=1))
    assert len(fake.rows) == 1


def test_mode_garbage(fake, http):
    fake.set_mode("garbage")
    response = get(http, fake, "/input/bulk", data="[[0,1,1]]")
    assert (response.status_code, response.content) == (200, b"<html>garbage</html>")
    assert fake.rows == []


def test_mode_reset(fake, http):
    fake.set_mode("reset")
    with pytest.raises(requests.ConnectionError):
        get(http, fake, "/input/post", csv=1)
    assert fake.requests_seen == [("GET", "/input/post", None)]
    fake.set_mode("ok")
    assert_ok(get(http, fake, "/input/post", csv=1))


def test_mode_hang_times_out_then_releases(fake, http):
    fake.set_mode("hang")
    with pytest.raises(requests.ReadTimeout):
        http.get(fake.url + "/input/post", params={"csv": 1, "apikey": WRITE_KEY}, timeout=0.5)
    outcome = []

    def client():
        try:
            outcome.append(requests.get(fake.url + "/input/post", params={"csv": 1, "apikey": WRITE_KEY}, timeout=30))
        except requests.RequestException as error:
            outcome.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    fake.wait_for_hanging(2)
    fake.set_mode("ok")
    thread.join(30)
    assert isinstance(outcome[0], requests.ConnectionError)   # released without an answer
    assert fake.rows == []
    assert_ok(requests.get(fake.url + "/input/post", params={"csv": 1, "apikey": WRITE_KEY}, timeout=10))


def test_stop_releases_hung_requests():
    fake = FakeEmoncms().start()
    fake.set_mode("hang")
    outcome = []

    def client():
        try:
            outcome.append(requests.get(fake.url + "/version", timeout=30))
        except requests.RequestException as error:
            outcome.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    fake.wait_for_hanging(1)
    fake.stop()
    thread.join(30)
    assert isinstance(outcome[0], requests.ConnectionError)


def test_set_mode_does_not_start_a_stopped_fake():
    fake = FakeEmoncms()
    fake.set_mode("refuse")
    fake.set_mode("ok")
    assert fake.port == 0
    fake.start()
    try:
        assert requests.get(fake.url + "/version", timeout=10).text == "11.16.8"
    finally:
        fake.stop()


def test_chunked_request_body(fake, http):
    def body():
        yield b"data=%5B%5B0%2C%22ch%22%2C1"
        yield b"%5D%5D&time=100"

    response = http.post(fake.url + "/input/bulk", data=body(), timeout=10,
                         headers=dict(bearer(), **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert_ok(response)
    assert fake.rows == [Row("ch", "1", 1.0, 100)]


def test_mode_refuse_and_reopen_on_same_port(fake, http):
    assert_ok(get(http, fake, "/input/post", csv=1))   # leaves a keep-alive connection in the pool
    port = fake.port
    fake.set_mode("refuse")
    with pytest.raises(requests.ConnectionError):
        get(http, fake, "/input/post", csv=2)
    with pytest.raises(requests.ConnectionError):
        requests.get(fake.url + "/version", timeout=10)
    fake.set_mode("ok")
    assert fake.port == port
    assert_ok(get(http, fake, "/input/post", csv=3))
    assert [r.value for r in fake.rows] == [1.0, 3.0]


def test_fail_next(fake, http):
    fake.fail_next(2, "error500")
    fake.fail_next(1, "garbage")
    statuses = [get(http, fake, "/input/post", csv=1) for _ in range(4)]
    assert [(r.status_code, r.content) for r in statuses] == [
        (500, b""), (500, b""), (200, b"<html>garbage</html>"), (200, b"ok")]
    assert len(fake.rows) == 1
    fake.set_mode("error500")
    fake.fail_next(1, "reset")
    with pytest.raises(requests.ConnectionError):
        get(http, fake, "/input/post", csv=1)
    assert get(http, fake, "/input/post", csv=1).status_code == 500


def test_set_mode_rejects_unknown(fake):
    with pytest.raises(ValueError):
        fake.set_mode("slow")
    with pytest.raises(ValueError):
        fake.fail_next(1, "refuse")


def test_wait_for_rows(fake, http):
    thread = threading.Thread(target=lambda: requests.get(
        fake.url + "/input/bulk", params={"data": "[[0,1,1,2,3]]", "apikey": WRITE_KEY}, timeout=10))
    thread.start()
    rows = fake.wait_for_rows(3, timeout=10)
    thread.join()
    assert len(rows) == 3


def test_wait_for_rows_timeout_says_how_many_arrived(fake, http):
    get(http, fake, "/input/post", csv="1,2")
    with pytest.raises(AssertionError, match="expected at least 5 rows within 0.1s, 2 arrived"):
        fake.wait_for_rows(5, timeout=0.1)


def test_reset_forgets_rows_and_nodes(fake, http):
    get(http, fake, "/input/post", node=1, csv=1)
    fake.reset()
    assert fake.rows == [] and fake.node_count() == 0
    assert get(http, fake, "/input/get").text == "[]"


def test_custom_keys():
    write, read = "ab" * 16, "cd" * 16
    with FakeEmoncms(write_key=write, read_key=read) as fake:
        assert requests.get(fake.url + "/input/post", params={"csv": 1, "apikey": write}, timeout=10).text == "ok"
        assert requests.get(fake.url + "/input/post", params={"csv": 1, "apikey": WRITE_KEY}, timeout=10).status_code == 401
        assert requests.get(fake.url + "/input/get", params={"apikey": read}, timeout=10).status_code == 200


def test_concurrent_bulk_uploads_all_stored(fake):
    def upload(node):
        with requests.Session() as session:
            for batch in range(20):
                data = json.dumps([[i, "n%d" % node, batch, i] for i in range(50)])
                assert session.post(fake.url + "/input/bulk", data={"data": data, "time": "1"},
                                    headers=bearer(), timeout=30).text == "ok"

    threads = [threading.Thread(target=upload, args=(node,)) for node in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake.wait_for_rows(4 * 20 * 50 * 2, timeout=30)) == 8000


def test_main_serves_in_foreground():
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.emoncms_server", "--port", "0"], cwd=str(ROOT),
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        first = proc.stdout.readline()
        url = first.split(" listening on ")[1].strip()
        assert WRITE_KEY in proc.stdout.readline()
        assert READ_KEY in proc.stdout.readline()
        assert requests.get(url + "/version", timeout=10).text == "11.16.8"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        proc.stdout.close()
