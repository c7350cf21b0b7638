"""The fleet scenario of docs/fleet.md, measured: three gateways with site names publish through
one central Mosquitto (per-site users and ACLs, persistence on) to a consumer with a persistent
session, through a broker restart and a consumer restart (``tests/support/fleet.py``, which
``tests/e2e/test_fleet.py`` runs with 100 readings per phase)::

    python -m bench.fleet                      # 1,000 readings per site and phase
    python -m bench.fleet --per-phase 5000 --sites 5

Prints, per site, readings sent, recorded by the gateway (its file buffer), delivered (received
by the consumer exactly as recorded: node, time to the ms, every value), duplicates, missing
and altered. Exit code 1 when a reading is missing or altered.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.support import fleet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-phase", type=int, default=1000, help="readings per site and phase")
    parser.add_argument("--sites", type=int, default=3)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="fleet-"))
    try:
        started = time.perf_counter()
        result = fleet.run(folder, sites=[f"site-{chr(ord('a') + i)}" for i in range(args.sites)],
                           per_phase=args.per_phase)
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for site, counts in result.items():
        print(f"{site}: delivered/sent {counts['delivered']}/{counts['sent']} "
              f"(recorded {counts['recorded']}, duplicates {counts['duplicates']}, "
              f"missing {counts['missing']}, altered {counts['altered']})")
    print(f"3 phases (all up; broker restarting; consumer away) in {elapsed:.1f} s")
    return 1 if any(c["missing"] or c["altered"] for c in result.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
