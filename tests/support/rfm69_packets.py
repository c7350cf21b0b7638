"""Radio packets as OEM nodes send them, as FIFO bytes (length byte first), and the [nodes]
section that decodes an emonTx4's. From the formats in the research notes on OEM hardware
(avrdb_firmware's emon_CM_6CT_temperature struct; LowPowerLab and JeeLib packet layouts)."""

import struct

from protocols.rfm69_radio import JeeLibNative


def emontx4_payload(msg=1234, vrms=240.12, power=(120, -35, 0, 2400, 7, 0),
                    energy=(15000, 200, 0, 98000, 1, 0), temps=(21.5, 300.0, 300.0), pulse=42) -> bytes:
    """emon_CM_6CT_temperature's struct: Msg L, Vrms h x100, P[6] h, E[6] l, T[3] h x100, pulse L."""
    payload = struct.pack("<Lh6h6l3hL", msg, round(vrms * 100), *power, *energy,
                          *(round(t * 100) for t in temps), pulse)
    assert len(payload) == 52
    return payload


def lpl(target: int, sender: int, payload: bytes, ctl: int = 0) -> bytes:
    """A LowPowerLab packet: ``[length, target, sender, CTL, payload...]`` (CTL 0x40: ACK wanted)."""
    return bytes([len(payload) + 3, target, sender, ctl]) + payload


def jeelib(dest: int, source: int, payload: bytes, group: int = 210) -> bytes:
    """A JeeLib native packet: ``[length, parity|dest, source, payload...]``."""
    return bytes([len(payload) + 2, dest | JeeLibNative.parity(group), source]) + payload


EMONTX4_NODES = """
[nodes]
[[17]]
nodename = emonTx4_17
[[[rx]]]
names = MSG, Vrms, P1, P2, P3, P4, P5, P6, E1, E2, E3, E4, E5, E6, T1, T2, T3, pulse
datacodes = L, h, h, h, h, h, h, h, l, l, l, l, l, l, h, h, h, L
scales = 1, 0.01, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.01, 0.01, 0.01, 1
[[20]]
[[[tx]]]
datacodes = b, H
"""
"""An emonTx4 (node 17) as emonhub's templates decode it, and node 20 taking two values."""
