"""Modbus register maps: which registers to read and how their 16-bit words become values. Pure.

No I/O and no Modbus library: the Modbus listener reads the words (with pymodbus) and this
module plans the requests and decodes the answers.

Register addresses. Two numberings are in use, and a map says which one it is written in:

* ``address`` numbering (the default, and emonhub's ``registers``): the 0-based address that
  travels in the request, as pymodbus's ``read_input_registers(address, ...)`` takes it.
  Decimal (``72``) or hex (``0x48``). Eastron's "Import kWh, 30073" is address 72.
* ``datasheet`` numbering (``register_numbering = datasheet``): the 1-based register numbers
  datasheets print, with the table in the first digit: 30001-39999 (or 300001-365536) are input
  registers (function code 4) at address number - 30001; 40001-49999 (400001-465536) holding
  registers (function code 3) at number - 40001. ``30073`` is input register address 72.

Numbers alone cannot tell the two apart (SMA inverters use 30775 as an address), so the map
says which; an address in 30001-49999 read with ``address`` numbering gets a warning that names
the other reading.

Data types: int16, uint16 (1 register), int32, uint32, float32 (2), int64, uint64, float64 (4).

Word and byte order of multi-register values, named by where the bytes of the big-endian value
``A B C D`` (A most significant) travel, register by register:

* ``ABCD``: most significant register first, high byte first in each (the Modbus convention;
  Eastron SDM, minimalmodbus BYTEORDER_BIG, emonhub ``byteorder = 0``);
* ``DCBA``: fully little-endian (emonhub ``byteorder = 1``);
* ``BADC``: most significant register first, bytes swapped in each register (emonhub 2);
* ``CDAB``: least significant register first, high byte first in each: "word swapped"
  (emonhub 3; Rayleigh RI-D150, Sontex).

For 64-bit values the same two rules (register order, byte order in a register) apply to four
registers. For 16-bit types only the byte order counts (``BADC`` and ``DCBA`` swap the two bytes).

A value is ``raw × scale + offset``, rounded to ``precision`` decimal places when given (emonhub
rounds before scaling; rounding the result gives the same or cleaner numbers).
"""

import difflib
import math
import struct
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

Number = Union[int, float]

DATATYPES = {"int16": (1, "h"), "uint16": (1, "H"), "int32": (2, "i"), "uint32": (2, "I"),
             "float32": (2, "f"), "int64": (4, "q"), "uint64": (4, "Q"), "float64": (4, "d")}
ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")        # also emonhub's byteorder 0, 1, 2, 3
EMONHUB_DATATYPES = {"int": "int16", "float": "float32"}
FUNCTIONS = {3: "holding", 4: "input"}
MAX_COUNT = 125                                   # registers in one read request (Modbus limit)
DEFAULT_MAX_GAP = 10


class MapError(ValueError):
    """A register map setting that is not valid; the message names the key and what was expected."""


@dataclass(frozen=True)
class Register:
    """One value of a meter: where it is, how it is coded, what it is called."""

    name: str
    address: int                  # 0-based address in the request
    function: int = 4             # 3 = holding registers, 4 = input registers
    datatype: str = "float32"
    order: str = "ABCD"
    scale: float = 1
    offset: float = 0
    precision: Optional[int] = None
    unit: str = ""

    @property
    def count(self) -> int:
        """How many 16-bit registers the value spans."""
        return DATATYPES[self.datatype][0]

    @property
    def end(self) -> int:
        """The address after the last register of the value."""
        return self.address + self.count

    def decode(self, words: Sequence[int]) -> Number:
        """The value of the register words (16-bit unsigned ints, as a Modbus library returns
        them); RegisterValueError for a float that is NaN or infinite."""
        raw = decode_raw(words, self.datatype, self.order)
        if isinstance(raw, float) and not math.isfinite(raw):
            raise RegisterValueError(f"{self.describe()}: the meter sent {raw} (a {self.datatype} that is "
                                     "not a number: no reading, or a wrong data type or order)")
        value = raw
        if self.scale != 1:
            value = value * self.scale
        if self.offset:
            value = value + self.offset
        if self.precision is not None:
            value = round(value, self.precision)
        return value

    def describe(self) -> str:
        """``P (input register 12)``."""
        return f"{self.name} ({FUNCTIONS.get(self.function, 'function %d' % self.function)} register {self.address})"


class RegisterValueError(ValueError):
    """A register's words are not a value (NaN or infinite float)."""


def decode_raw(words: Sequence[int], datatype: str, order: str = "ABCD") -> Number:
    """The number in ``words`` (one 16-bit register each) for a data type and word/byte order."""
    size, code = DATATYPES[datatype]
    if len(words) != size:
        raise ValueError(f"{datatype} spans {size} registers, not {len(words)}")
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not one of {', '.join(ORDERS)}")
    regs = list(words)
    if size > 1 and order in ("DCBA", "CDAB"):      # least significant register first
        regs.reverse()
    data = b"".join(int(w).to_bytes(2, "big") for w in regs)
    if order in ("DCBA", "BADC"):                     # bytes swapped within each register
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    return struct.unpack(">" + code, data)[0]


def encode_raw(value: Number, datatype: str, order: str = "ABCD") -> List[int]:
    """The register words that hold ``value``: the inverse of ``decode_raw`` (for test servers)."""
    size, code = DATATYPES[datatype]
    data = struct.pack(">" + code, value)
    if order in ("DCBA", "BADC"):
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    regs = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if size > 1 and order in ("DCBA", "CDAB"):
        regs.reverse()
    return regs


# -- requests ------------------------------------------------------------------------------------
class Result(NamedTuple):
    """A register's value, or why there is none."""

    register: Register
    value: Optional[Number]
    error: Optional[str]


@dataclass(frozen=True)
class Request:
    """One read request: ``count`` registers from ``address`` with function code ``function``,
    covering ``registers`` (and the gaps between them)."""

    function: int
    address: int
    count: int
    registers: Tuple[Register, ...]

    def decode(self, words: Sequence[int]) -> List[Result]:
        """The value of every register of the request from the words the meter returned."""
        if len(words) != self.count:
            error = f"the meter returned {len(words)} registers for a request of {self.count}"
            return [Result(r, None, error) for r in self.registers]
        results = []
        for register in self.registers:
            start = register.address - self.address
            try:
                results.append(Result(register, register.decode(words[start:start + register.count]), None))
            except RegisterValueError as error:
                results.append(Result(register, None, str(error)))
        return results

    def split(self) -> List["Request"]:
        """One request per register: for a meter that refuses a block spanning unused addresses."""
        return [Request(r.function, r.address, r.count, (r,)) for r in self.registers]

    def describe(self) -> str:
        kind = FUNCTIONS.get(self.function, f"function {self.function}")
        return f"{kind} registers {self.address}-{self.address + self.count - 1}"


def plan_requests(registers: Iterable[Register], max_gap: int = DEFAULT_MAX_GAP,
                  max_count: int = MAX_COUNT) -> List[Request]:
    """The fewest read requests that cover ``registers``.

    Registers of one function code are sorted by address and joined into one request while the
    unused registers between two values are at most ``max_gap`` and the request spans at most
    ``max_count`` registers (125 is Modbus's limit; Eastron meters take 80). Reading a few unused
    registers costs 2 bytes each on the line; a request costs a turnaround of tens of ms.
    """
    if not 1 <= max_count <= MAX_COUNT:
        raise ValueError(f"max_count {max_count} is not 1-{MAX_COUNT}")
    requests: List[Request] = []
    by_function: Dict[int, List[Register]] = {}
    for register in registers:
        by_function.setdefault(register.function, []).append(register)
    for function in sorted(by_function):
        block: List[Register] = []
        start = end = 0
        for register in sorted(by_function[function], key=lambda r: (r.address, r.end)):
            if block and register.address - end <= max_gap and max(end, register.end) - start <= max_count:
                block.append(register)
                end = max(end, register.end)
                continue
            if block:
                requests.append(Request(function, start, end - start, tuple(block)))
            block, start, end = [register], register.address, register.end
        if block:
            requests.append(Request(function, start, end - start, tuple(block)))
    return requests


class DeviceError(Exception):
    """A Modbus exception response: ``code`` 1 illegal function, 2 illegal data address,
    3 illegal data value, 4 device failure, 6 busy... The listener raises it from its
    ``read`` callable for ``read_requests``."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message or f"Modbus exception {code} ({EXCEPTION_CODES.get(code, 'unknown')})")
        self.code = code


EXCEPTION_CODES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   8: "memory parity error", 10: "gateway path unavailable",
                   11: "gateway target device failed to respond"}


def read_requests(requests: Sequence[Request], read: Callable[[int, int, int], Sequence[int]]) -> List[Result]:
    """Read every request with ``read(function, address, count)`` and decode the words.

    A block the meter refuses as an illegal address (exception 2: it spans an address the
    meter does not have) is read again register by register, so one bad address costs only
    its own value; another exception response fails the registers of that request. Anything
    else ``read`` raises (a timeout: the meter is silent) goes to the caller at once, so a silent
    meter costs one timeout, not one per request.
    """
    results: List[Result] = []
    for request in requests:
        try:
            results.extend(request.decode(read(request.function, request.address, request.count)))
        except DeviceError as error:
            if error.code == 2 and len(request.registers) > 1:
                results.extend(read_requests(request.split(), read))
            else:
                results.extend(Result(r, None, f"{r.describe()}: {error}") for r in request.registers)
    return results


# -- register maps from settings ---------------------------------------------------------------------
@dataclass(frozen=True)
class RegisterMap:
    """A meter's registers and how to read them."""

    registers: Tuple[Register, ...]
    max_count: int = MAX_COUNT
    max_gap: int = DEFAULT_MAX_GAP
    writes: Tuple[Tuple[int, Tuple[int, ...]], ...] = ()    # (address, words) written before each read

    def requests(self) -> List[Request]:
        return plan_requests(self.registers, self.max_gap, self.max_count)


def parse_register_number(text: object, numbering: str = "address", key: str = "registers") -> Tuple[int, Optional[int]]:
    """(address, function code or None) of one entry of a ``registers`` list.

    ``address`` numbering: a 0-based address, decimal or 0x hex; the function code comes from
    elsewhere (None). ``datasheet`` numbering: a 3xxxx/4xxxx register number, which also gives
    the function code.
    """
    token = str(text).strip()
    try:
        number = int(token, 16) if token.lower().startswith("0x") else int(token, 10)
    except ValueError:
        kind = "a register address (like 72 or 0x48)" if numbering == "address" else \
            "a register number (like 30073 or 40001)"
        raise MapError(f"{key}: {token!r} is not {kind}") from None
    if numbering == "address":
        if not 0 <= number <= 65535:
            raise MapError(f"{key}: {token} is not a register address (0-65535)")
        return number, None
    for low, high, function in ((30001, 39999, 4), (40001, 49999, 3), (300001, 365536, 4), (400001, 465536, 3)):
        if low <= number <= high:
            return number - low, function
    raise MapError(f"{key}: {token} is not an input (30001-39999) or holding (40001-49999) register number; "
                   "with register_numbering = datasheet, registers are written as the datasheet prints them")


def as_list(value: object) -> List[str]:
    """configobj gives a list for ``a, b`` and a str for ``a``; a trailing comma gives [a]."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    text = str(value).strip()
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def parse_datatype(text: str, key: str) -> str:
    name = text.strip().lower()
    name = EMONHUB_DATATYPES.get(name, name)
    if name not in DATATYPES:
        known = ", ".join(list(DATATYPES) + list(EMONHUB_DATATYPES))
        raise MapError(f"{key}: {text!r} is not a data type ({known})")
    return name


def parse_order(text: object, key: str = "byteorder") -> str:
    """``ABCD``/``DCBA``/``BADC``/``CDAB``, or emonhub's (minimalmodbus's) 0/1/2/3."""
    token = str(text).strip().upper()
    if token.isdigit() and int(token) < len(ORDERS):
        return ORDERS[int(token)]
    if token in ORDERS:
        return token
    raise MapError(f"{key}: {text!r} is not a byte order (ABCD, DCBA, BADC, CDAB, or emonhub's 0-3)")


def _numbers(values: List[str], key: str, cast, check=None, what: str = "a number") -> List:
    out = []
    for text in values:
        try:
            number = cast(text)
        except ValueError:
            raise MapError(f"{key}: {text!r} is not {what}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise MapError(f"{key}: {text!r} is not {what}")
        if check is not None and not check(number):
            raise MapError(f"{key}: {text!r} is not {what}")
        out.append(number)
    return out


MAP_KEYS = ("registers", "names", "units", "scales", "offsets", "precision", "datatypes", "functioncodes",
            "byteorder", "datatype", "register_numbering", "max_gap", "max_count")


def parse_registers(settings: Mapping[str, object], default_datatype: str = "float32",
                    default_order: str = "ABCD") -> Tuple[List[Register], List[str]]:
    """The registers a meter section lists, and warnings. MapError names the bad key.

    Keys (emonhub's, and this gateway's ``units``, ``offsets``, ``register_numbering``):
    ``registers`` (list), ``names`` (default ``r<address>``), ``units``, ``scales`` (default 1),
    ``offsets`` (default 0), ``precision`` (decimal places, default none) -- each fewer than
    the registers is fine (the rest take the default), more is an error; ``datatypes`` and
    ``functioncodes`` -- as many as registers, or one for all; ``byteorder`` (one for all, or
    one per register); ``datatype`` (the default type, emonhub's ``int``/``float`` too).
    The function code defaults to 3 for integer types and 4 for floats, as in emonhub, unless
    datasheet numbering gives it.
    """
    numbering = str(settings.get("register_numbering", "address")).strip().lower()
    if numbering not in ("address", "datasheet"):
        raise MapError(f"register_numbering: {numbering!r} is not address or datasheet")
    entries = as_list(settings.get("registers"))
    if not entries:
        raise MapError("registers: no registers listed (e.g. registers = 0, 6, 12)")
    parsed = [parse_register_number(e, numbering) for e in entries]
    count = len(parsed)

    def listed(key: str, exact: bool = False) -> List[str]:
        values = as_list(settings.get(key))
        if len(values) > count or (exact and len(values) not in (0, 1, count)):
            raise MapError(f"{key}: {len(values)} entries for {count} registers"
                           + (" (give one for all, or one per register)" if exact else ""))
        if exact and len(values) == 1 and count > 1:
            values = values * count
        return values

    names = listed("names")
    units = listed("units")
    scales = _numbers(listed("scales"), "scales", float)
    offsets = _numbers(listed("offsets"), "offsets", float)
    precision = _numbers(listed("precision"), "precision", int, lambda n: 0 <= n <= 12,
                         "a number of decimal places (0-12)")
    datatypes = [parse_datatype(t, "datatypes") for t in listed("datatypes", exact=True)]
    functions = _numbers(listed("functioncodes", exact=True), "functioncodes", int, lambda n: n in (3, 4),
                         "a read function code (3 for holding, 4 for input registers)")
    orders = [parse_order(o) for o in listed("byteorder", exact=True)]
    default_type = parse_datatype(str(settings.get("datatype", default_datatype)), "datatype")

    registers, warnings = [], []
    for i, (address, implied) in enumerate(parsed):
        datatype = datatypes[i] if datatypes else default_type
        function = functions[i] if functions else implied or (4 if datatype.startswith("float") else 3)
        if implied and function != implied:
            raise MapError(f"functioncodes: {function} for register {entries[i]}, which is "
                           f"{'an input' if implied == 4 else 'a holding'} register number (function {implied})")
        if numbering == "address" and 30001 <= address <= 49999:
            table = "input" if address < 40001 else "holding"
            warnings.append(f"registers: {entries[i]} is read as address {address}; if it is a datasheet "
                            f"register number ({table} register address {address - (30001 if table == 'input' else 40001)}), "
                            "set register_numbering = datasheet")
        registers.append(Register(
            name=names[i] if i < len(names) and names[i] else f"r{address if numbering == 'address' else entries[i]}",
            address=address, function=function, datatype=datatype,
            order=orders[i] if orders else parse_order(default_order),
            scale=scales[i] if i < len(scales) else 1, offset=offsets[i] if i < len(offsets) else 0,
            precision=precision[i] if i < len(precision) else None, unit=units[i] if i < len(units) else ""))
    _check_unique(registers)
    return registers, warnings


def _check_unique(registers: Sequence[Register]) -> None:
    seen: Dict[str, Register] = {}
    for register in registers:
        if register.name in seen:
            raise MapError(f"names: {register.name!r} is given to two registers "
                           f"({seen[register.name].address} and {register.address})")
        seen[register.name] = register


def parse_limits(settings: Mapping[str, object], max_gap: int = DEFAULT_MAX_GAP,
                 max_count: int = MAX_COUNT) -> Tuple[int, int]:
    """``max_gap`` (unused registers read to save a request, 0-125) and ``max_count``
    (registers per request, 1-125) from a meter section, with these defaults."""
    gap = _numbers(as_list(settings.get("max_gap", max_gap)), "max_gap", int, lambda n: 0 <= n <= MAX_COUNT,
                   "a number of registers (0-125)")
    most = _numbers(as_list(settings.get("max_count", max_count)), "max_count", int,
                    lambda n: 1 <= n <= MAX_COUNT, "a number of registers per request (1-125)")
    if len(gap) != 1 or len(most) != 1:
        raise MapError("max_gap and max_count take one number each")
    return gap[0], most[0]


def closest(name: str, known: Iterable[str]) -> str:
    """``; did you mean x?`` for the closest of ``known`` (ignoring case), or an empty string."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]}?" if close else ""


def with_overrides(base: Sequence[Register], extra: Sequence[Register]) -> List[Register]:
    """``base`` with each register of ``extra`` replacing the one of the same name, or added."""
    names = {r.name: i for i, r in enumerate(base)}
    out = list(base)
    for register in extra:
        if register.name in names:
            out[names[register.name]] = register
        else:
            names[register.name] = len(out)
            out.append(register)
    return out


def only(registers: Sequence[Register], wanted: Sequence[str], key: str = "inputs") -> List[Register]:
    """The registers named in ``wanted``, in that order; MapError for a name not in the map."""
    by_name = {r.name: r for r in registers}
    out = []
    for name in wanted:
        if name not in by_name:
            raise MapError(f"{key}: {name!r} is not in the register map (known: {', '.join(by_name)})"
                           f"{closest(name, by_name)}")
        out.append(by_name[name])
    return out

