"""Modbus register maps: decoding every data type in every word/byte order, planning the fewest
read requests, reading around refused addresses, and register lists from config sections."""


import pytest
from hypothesis import given, settings, strategies as st

from protocols.modbus_registers import (DATATYPES, MAX_COUNT, ORDERS, DeviceError, MapError, Register, Request,
                                        RegisterValueError, decode_raw, encode_raw, parse_register_number,
                                        parse_registers, plan_requests, read_requests)


# -- decoding ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("datatype, words, order, value", [
    ("float32", [0x4348, 0x0000], "ABCD", 200.0),
    ("float32", [0x0000, 0x4348], "CDAB", 200.0),
    ("float32", [0x4843, 0x0000], "BADC", 200.0),
    ("float32", [0x0000, 0x4843], "DCBA", 200.0),
    ("float32", [0x4366, 0x8000], "ABCD", 230.5),
    ("float32", [0x6643, 0x0080], "BADC", 230.5),
    ("uint32", [0x0102, 0x0304], "ABCD", 0x01020304),
    ("uint32", [0x0304, 0x0102], "CDAB", 0x01020304),
    ("uint32", [0x0201, 0x0403], "BADC", 0x01020304),
    ("uint32", [0x0403, 0x0201], "DCBA", 0x01020304),
    ("int32", [0xFFFF, 0xFFFE], "ABCD", -2),
    ("int32", [0xFFFE, 0xFFFF], "CDAB", -2),
    ("int32", [0xFEFF, 0xFFFF], "DCBA", -2),
    ("int32", [0x0000, 0x8000], "CDAB", -2 ** 31),
    ("int16", [0xFFFE], "ABCD", -2),
    ("int16", [0xFEFF], "BADC", -2),
    ("int16", [0x00C8], "CDAB", 200),               # word order means nothing for one register
    ("uint16", [0xFFFE], "ABCD", 65534),
    ("uint16", [0x3412], "DCBA", 0x1234),
    ("uint64", [0x0102, 0x0304, 0x0506, 0x0708], "ABCD", 0x0102030405060708),
    ("uint64", [0x0708, 0x0506, 0x0304, 0x0102], "CDAB", 0x0102030405060708),
    ("uint64", [0x0201, 0x0403, 0x0605, 0x0807], "BADC", 0x0102030405060708),
    ("uint64", [0x0807, 0x0605, 0x0403, 0x0201], "DCBA", 0x0102030405060708),
    ("int64", [0xFFFF] * 4, "ABCD", -1),
    ("float64", [0x3FF8, 0, 0, 0], "ABCD", 1.5),
    ("float64", [0, 0, 0, 0x3FF8], "CDAB", 1.5),
])
def test_known_patterns_of_every_type_and_order(datatype, words, order, value):
    assert decode_raw(words, datatype, order) == value
    assert encode_raw(value, datatype, order) == words


def _values(datatype):
    if datatype.startswith("float"):
        return st.floats(allow_nan=False, allow_infinity=False, width=32 if datatype == "float32" else 64)
    bits = int(datatype.lstrip("uint"))
    return st.integers(0, 2 ** bits - 1) if datatype.startswith("u") else st.integers(-2 ** (bits - 1), 2 ** (bits - 1) - 1)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(DATATYPES)).flatmap(lambda t: st.tuples(st.just(t), _values(t))), st.sampled_from(ORDERS))
def test_every_value_survives_encode_and_decode(typed, order):
    datatype, value = typed
    words = encode_raw(value, datatype, order)
    assert len(words) == DATATYPES[datatype][0] and all(0 <= w <= 0xFFFF for w in words)
    assert decode_raw(words, datatype, order) == value


def test_scale_offset_and_precision():
    temperature = Register("flow_temp", 66, 3, "int16", scale=0.1, precision=2)
    assert temperature.decode([215]) == 21.5 and temperature.decode([0xFF38]) == -20.0
    assert Register("P", 15, scale=1000).decode([0x3F80, 0]) == 1000.0                 # kW to W
    assert Register("T", 0, 3, "uint16", scale=0.01, offset=-273.15, precision=2).decode([29315]) == 20.0
    assert Register("EI", 72, precision=3).decode(encode_raw(1234.56789, "float32")) == 1234.568
    assert Register("n", 0, 3, "uint16").decode([7]) == 7 and isinstance(Register("n", 0, 3, "uint16").decode([7]), int)


@pytest.mark.parametrize("words", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]])
def test_nan_or_infinity_is_an_error_for_that_register_only(words):
    power = Register("P", 12)
    with pytest.raises(RegisterValueError, match=r"P \(input register 12\): the meter sent"):
        power.decode(words)
    request = Request(4, 10, 4, (Register("V", 10), power))
    results = request.decode(encode_raw(230.0, "float32") + words)
    assert results[0].value == 230.0 and results[0].error is None
    assert results[1].value is None and "not a number" in results[1].error


def test_a_short_answer_fails_its_request():
    results = Request(4, 0, 4, (Register("V", 0), Register("I", 2))).decode([0x4348, 0, 0])
    assert [r.error for r in results] == ["the meter returned 3 registers for a request of 4"] * 2


# -- planning requests --------------------------------------------------------------------------------
def regs(*addresses, function=4, datatype="float32"):
    return [Register(f"r{a}", a, function, datatype) for a in addresses]


def spans(requests):
    return [(r.function, r.address, r.count) for r in requests]


def test_nearby_registers_share_a_request():
    assert spans(plan_requests(regs(0, 6, 12, 18, 30, 70, 72, 74, 76))) == [(4, 0, 32), (4, 70, 8)]
    assert spans(plan_requests(regs(0, 6, 12), max_gap=0)) == [(4, 0, 2), (4, 6, 2), (4, 12, 2)]
    assert spans(plan_requests(regs(0, 2, 4))) == [(4, 0, 6)]


def test_function_codes_are_never_mixed_and_duplicates_are_read_once():
    plan = plan_requests(regs(68, 68, 70) + regs(0, 1, function=3, datatype="int16"))
    assert spans(plan) == [(3, 0, 2), (4, 68, 4)]
    assert [r.name for r in plan[1].registers] == ["r68", "r68", "r70"]


def test_requests_stop_at_the_limit():
    plan = plan_requests(regs(*range(0, 300, 2)))
    assert spans(plan) == [(4, 0, 124), (4, 124, 124), (4, 248, 52)]
    assert spans(plan_requests(regs(*range(0, 100, 2)), max_count=80)) == [(4, 0, 80), (4, 80, 20)]
    with pytest.raises(ValueError):
        plan_requests(regs(0), max_count=126)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 600), st.sampled_from([3, 4]), st.sampled_from(list(DATATYPES))),
                min_size=1, max_size=60),
       st.integers(0, 30), st.integers(4, MAX_COUNT))
def test_plans_cover_every_register_once_within_limits_and_cannot_be_merged(specs, max_gap, max_count):
    registers = [Register(f"r{i}", a, f, t) for i, (a, f, t) in enumerate(specs)]
    plan = plan_requests(registers, max_gap, max_count)
    covered = [r for request in plan for r in request.registers]
    assert sorted(r.name for r in covered) == sorted(r.name for r in registers)
    for request in plan:
        assert request.count <= max_count
        for r in request.registers:
            assert r.function == request.function and request.address <= r.address and r.end <= request.address + request.count
    for before, after in zip(plan, plan[1:]):
        if before.function == after.function:
            end = before.address + before.count
            assert after.address - end > max_gap or max(end, after.registers[0].end) - before.address > max_count


# -- reading ----------------------------------------------------------------------------------------------
class FakeDevice:
    """Input registers 0-99 hold float32 values 0.0, 1.0, ...; ``missing`` addresses do not exist."""

    def __init__(self, missing=()):
        self.words = [w for n in range(50) for w in encode_raw(float(n), "float32")]
        self.missing = set(missing)
        self.requests = []

    def read(self, function, address, count):
        self.requests.append((function, address, count))
        if self.missing & set(range(address, address + count)) or address + count > len(self.words):
            raise DeviceError(2)
        return self.words[address:address + count]


def test_a_refused_block_is_read_again_register_by_register():
    device = FakeDevice(missing={8})
    results = read_requests(plan_requests(regs(0, 2, 10, 20)), device.read)
    assert [(r.register.name, r.value) for r in results] == [("r0", 0.0), ("r2", 1.0), ("r10", 5.0), ("r20", 10.0)]
    assert device.requests == [(4, 0, 22), (4, 0, 2), (4, 2, 2), (4, 10, 2), (4, 20, 2)]
    results = read_requests(plan_requests(regs(0, 8)), device.read)
    assert results[0].value == 0.0 and results[1].value is None
    assert "r8 (input register 8): Modbus exception 2 (illegal data address)" in results[1].error


def test_other_exception_responses_fail_their_request_only():
    def read(function, address, count):
        if function == 3:
            raise DeviceError(4)
        return FakeDevice().read(function, address, count)

    results = read_requests(plan_requests(regs(0, 2) + regs(0, function=3, datatype="int16")), read)
    assert [(r.register.name, r.value) for r in results] == [("r0", None), ("r0", 0.0), ("r2", 1.0)]
    assert results[0].error == "r0 (holding register 0): Modbus exception 4 (server device failure)"


def test_a_silent_meter_costs_one_timeout():
    calls = []

    def read(function, address, count):
        calls.append(address)
        raise TimeoutError("no answer within 1 s")

    with pytest.raises(TimeoutError):
        read_requests(plan_requests(regs(0, 100, 200)), read)
    assert calls == [0]


# -- register lists from settings ------------------------------------------------------------------------
def test_emonhub_register_list_keys():
    registers, warnings = parse_registers({"registers": ["0", "6", "0x48"], "names": ["V", "I"], "precision": ["2"],
                                           "scales": ["1", "0.001"], "units": ["V"]})
    assert warnings == []
    assert registers == [Register("V", 0, 4, "float32", "ABCD", 1, 0, 2, "V"),
                         Register("I", 6, 4, "float32", "ABCD", 0.001, 0, None, ""),
                         Register("r72", 72, 4, "float32", "ABCD", 1, 0, None, "")]


def test_emonhub_int_registers_default_to_holding_and_byteorder_numbers():
    registers, _ = parse_registers({"registers": "75, 74", "datatype": "int", "byteorder": "3"})
    assert [(r.function, r.datatype, r.order) for r in registers] == [(3, "int16", "CDAB")] * 2
    mixed, _ = parse_registers({"registers": ["1", "3"], "datatypes": ["float", "uint32"],
                                "functioncodes": ["3", "4"], "byteorder": ["ABCD", "dcba"]})
    assert [(r.function, r.datatype, r.order) for r in mixed] == [(3, "float32", "ABCD"), (4, "uint32", "DCBA")]


def test_datasheet_numbering():
    registers, warnings = parse_registers({"registers": ["30001", "30073", "40001", "300101"],
                                           "register_numbering": "datasheet"})
    assert [(r.address, r.function) for r in registers] == [(0, 4), (72, 4), (0, 3), (100, 4)]
    assert warnings == []
    assert parse_register_number("0x48") == (72, None)


def test_a_datasheet_number_read_as_an_address_gets_a_warning():
    registers, warnings = parse_registers({"registers": ["30073"]})
    assert registers[0].address == 30073
    assert warnings == ["registers: 30073 is read as address 30073; if it is a datasheet register number "
                        "(input register address 72), set register_numbering = datasheet"]


@pytest.mark.parametrize("section, message", [
    ({}, "registers: no registers listed"),
    ({"registers": ["12", "abc"]}, "registers: 'abc' is not a register address (like 72 or 0x48)"),
    ({"registers": ["70000"]}, "registers: 70000 is not a register address (0-65535)"),
    ({"registers": ["-1"]}, "registers: -1 is not a register address"),
    ({"registers": ["1", "2", "3", "4"], "datatypes": ["int", "int", "float"]}, "datatypes: 3 entries for 4 registers"),
    ({"registers": ["1"], "datatypes": ["double"]}, "datatypes: 'double' is not a data type (int16, uint16"),
    ({"registers": ["1"], "datatype": "word"}, "datatype: 'word' is not a data type"),
    ({"registers": ["1", "2"], "names": ["a", "b", "c"]}, "names: 3 entries for 2 registers"),
    ({"registers": ["1", "2"], "names": ["a", "a"]}, "names: 'a' is given to two registers (1 and 2)"),
    ({"registers": ["1"], "scales": ["x"]}, "scales: 'x' is not a number"),
    ({"registers": ["1"], "scales": ["nan"]}, "scales: 'nan' is not a number"),
    ({"registers": ["1"], "precision": ["-1"]}, "precision: '-1' is not a number of decimal places"),
    ({"registers": ["1"], "functioncodes": ["5"]}, "functioncodes: '5' is not a read function code"),
    ({"registers": ["1"], "byteorder": "4"}, "byteorder: '4' is not a byte order (ABCD, DCBA, BADC, CDAB"),
    ({"registers": ["1"], "register_numbering": "modicon"}, "register_numbering: 'modicon' is not address or datasheet"),
    ({"registers": ["20001"], "register_numbering": "datasheet"}, "registers: 20001 is not an input (30001-39999)"),
    ({"registers": ["30001"], "register_numbering": "datasheet", "functioncodes": ["3"]},
     "functioncodes: 3 for register 30001, which is an input register number (function 4)"),
])
def test_register_list_errors_name_the_key(section, message):
    with pytest.raises(MapError) as caught:
        parse_registers(section)
    assert str(caught.value).startswith(message)
