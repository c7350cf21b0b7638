"""What refused readings cost a backlog: rows sent and drain time, against the same backlog clean.

The delivery engine (``gateway/delivery.py``) drains an in-memory backlog into a modelled
destination. Nothing waits: every request adds its modelled time to a clock of its own, so a
run takes seconds and gives the same figures each time.

The model, after emoncms 11.16.8 on Apache/MariaDB (a 1-row bulk request takes about 4 ms, a
500-row one about 250 ms measured directly, and the gateway drained 20,000 readings in 18.8 s
through 40 requests): a request costs ``--request-ms`` (4) plus ``1000 / --rows-per-s`` (1,200)
ms per row it carries, whatever its answer. A row the destination receives but does not store
(behind a named refusal; in a batch refused unnamed) may be given a cost of its own,
``--unstored-row-ms``: the real emoncms stops at a refused row and never processes those behind
it, which then cost little more than their bytes. One reading in every ``1 / rate`` is bad, at
a random place in each block of that many (the same placement as ``bench/emoncms_live.py``):

* named: the destination stores the rows in front of the bad one, refuses it and says which it
  is (emoncms' answers, as ``buffers/emoncms.py`` reads them);
* unnamed: the destination stores nothing of a batch holding a bad reading and does not say
  which (the engine has to search).

Figures per rate and kind: rows sent per reading, requests, modelled drain time against the
clean backlog's (the same readings, none bad, full batches), and the batch sizes used. Two more
scenarios: ``lone`` (one bad reading in the middle of the backlog: what it costs) and
``regrowth`` (1 in 1,000 bad for 20,000 readings, then none: how many readings until batches
are full again).

    python -m bench.refusal_rate                         # the table (20,000 and 200,000 readings)
    python -m bench.refusal_rate --request-ms 100        # a destination far away (per request cost)
    python -m bench.refusal_rate --gateway-dir /tmp/old  # the engine of another tree

Run from the repo root with the project's venv. Nothing here is a test: it prints numbers.
"""

import argparse
import importlib
import json
import random
import statistics
import sys
from pathlib import Path

RATES = [0, 1e-5, 1e-4, 1e-3, 1e-2]


def load_engine(gateway_dir=None):
    """The classes of the engine to measure (this tree's, or ``gateway_dir``'s)."""
    if gateway_dir:
        sys.path.insert(0, str(Path(gateway_dir).resolve()))
    base = importlib.import_module("buffers.base")
    delivery = importlib.import_module("gateway.delivery")
    spool = importlib.import_module("gateway.spool")
    storage = importlib.import_module("gateway.spool.storage")
    frame = importlib.import_module("gateway.frame")
    return base, delivery, spool, storage, frame.Frame


class Model:
    """A backlog of ``readings`` and a modelled destination refusing ``bad`` (reading numbers)."""

    def __init__(self, engine, readings: int, bad: set, named: bool, batch_size: int,
                 request_s: float, row_s: float, unstored_row_s: float = None):
        base, delivery, spool_mod, storage, frame_cls = engine
        self.bad, self.named = bad, named
        self.request_s, self.row_s = request_s, row_s
        self.unstored_row_s = row_s if unstored_row_s is None else unstored_row_s
        self.requests = self.rows = 0
        self.clock = 0.0
        self.sizes = []           # (reading number at the batch's head, batch size) per request
        self.stored = set()
        model = self

        class Destination(base.Buffer):
            def send(self, batch):
                model.requests += 1
                model.rows += len(batch)
                numbers = [int(f.values[0]) for f in batch]
                model.sizes.append((numbers[0], len(batch)))
                first_bad = next((i for i, n in enumerate(numbers) if n in model.bad), None)
                stored = len(batch) if first_bad is None else first_bad + 1 if model.named else 0
                model.clock += (model.request_s + stored * model.row_s
                                + (len(batch) - stored) * model.unstored_row_s)
                if first_bad is None:
                    model.stored.update(numbers)
                    return
                if model.named:
                    model.stored.update(numbers[:first_bad])
                    raise base.RejectedError("bad value", delivered=first_bad)
                raise base.RejectedError("bad value")

        spool = spool_mod.Spool(storage.MemoryFiles(), None,
                                spool_mod.SpoolSettings(hot_max_bytes=1 << 30, spill_after=1e9))
        spool.open()
        destination = Destination("model", {"active": True, "max_items": 0, "batch_size": batch_size,
                                            "retry_max": 1.0})
        self.buffer = delivery.Delivery(destination, spool.register("model", spool_mod.BufferStats()))
        self.buffer.log.disabled = True   # one warning per refused reading is not what we measure
        for n in range(readings):
            spool.append(frame_cls(n % 32 + 1, (n,), 1.7e9 + n, None, None, "model"))
        self.readings = readings

    def drain(self) -> "Model":
        """Deliver everything, as the sender thread does (minus the waiting)."""
        buffer = self.buffer
        while len(buffer.queue):
            batch = buffer.queue.take(buffer._batch_limit(), block=False)
            if batch:
                buffer._deliver(batch)
        stats = buffer.stats
        good = set(range(self.readings)) - self.bad
        assert self.stored == good, "the model lost or stored a wrong reading"
        assert (stats.delivered, stats.dropped["rejected"]) == (len(good), len(self.bad)), stats
        return self


def bad_readings(readings: int, rate: float, seed: int) -> set:
    """One at a random place in each block of 1/rate readings."""
    if not rate:
        return set()
    every = round(1 / rate)
    rng = random.Random(seed)
    return {n for n in (block + rng.randrange(every) for block in range(0, readings, every))
            if n < readings}


def measure(engine, args, readings: int, rate: float, named: bool, clean: Model) -> dict:
    runs = []
    for seed in range(args.seeds):
        model = Model(engine, readings, bad_readings(readings, rate, seed), named, args.batch_size,
                      args.request_ms / 1000, 1 / args.rows_per_s, args.unstored).drain()
        sizes = [size for _, size in model.sizes]
        runs.append({"rows": model.rows / readings, "time": model.clock / clean.clock,
                     "requests": model.requests, "bad": len(model.bad),
                     "median_batch": statistics.median(sizes), "smallest_batch": min(sizes)})
    return {"readings": readings, "rate": rate, "refusals": "named" if named else "unnamed",
            "bad": round(statistics.mean(r["bad"] for r in runs), 1),
            "rows_per_reading": round(statistics.mean(r["rows"] for r in runs), 3),
            "rows_worst": round(max(r["rows"] for r in runs), 3),
            "time_vs_clean": round(statistics.mean(r["time"] for r in runs), 3),
            "time_worst": round(max(r["time"] for r in runs), 3),
            "requests": round(statistics.mean(r["requests"] for r in runs)),
            "clean_requests": clean.requests,
            "median_batch": statistics.median(r["median_batch"] for r in runs),
            "clean_s": round(clean.clock, 2)}


def lone(engine, args, readings: int, named: bool) -> dict:
    """One bad reading in the middle of the backlog."""
    model = Model(engine, readings, {readings // 2}, named, args.batch_size,
                  args.request_ms / 1000, 1 / args.rows_per_s, args.unstored).drain()
    return {"scenario": "lone", "readings": readings, "refusals": "named" if named else "unnamed",
            "extra_rows": model.rows - readings,
            "extra_requests": model.requests - -(-readings // args.batch_size)}


def regrowth(engine, args, named: bool, bad_part: int = 20000, clean_part: int = 200000) -> dict:
    """1 in 1,000 bad for ``bad_part`` readings, then none: readings sent after the last bad one
    until a batch is full again, and the requests that took."""
    bad = bad_readings(bad_part, 1e-3, 0)
    model = Model(engine, bad_part + clean_part, bad, named, args.batch_size,
                  args.request_ms / 1000, 1 / args.rows_per_s, args.unstored).drain()
    last = max(bad)
    after = [(head, size) for head, size in model.sizes[:-1] if head > last]   # not the tail
    full = next((head for head, size in after if size == args.batch_size), None)
    return {"scenario": "regrowth", "refusals": "named" if named else "unnamed",
            "smallest_batch_after_last_bad": min(size for _, size in after),
            "readings_until_full": None if full is None else full - last - 1,
            "requests_until_full": sum(1 for head, _ in after if full is None or head < full)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", default="20000,200000", help="backlog sizes, comma-separated")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--request-ms", type=float, default=4.0)
    parser.add_argument("--rows-per-s", type=float, default=1200.0)
    parser.add_argument("--unstored-row-ms", type=float,
                        help="cost of a row received but not stored (default: as a stored one)")
    parser.add_argument("--seeds", type=int, default=3, help="placements of the bad readings")
    parser.add_argument("--gateway-dir", help="measure the engine in this folder")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    args.unstored = None if args.unstored_row_ms is None else args.unstored_row_ms / 1000
    engine = load_engine(args.gateway_dir)
    print(f"engine: {engine[1].__file__}; batch_size {args.batch_size}; a request "
          f"{args.request_ms:g} ms + {1000 / args.rows_per_s:.3f} ms per row"
          + ("" if args.unstored is None else f" ({args.unstored_row_ms:g} ms if not stored)"))
    print(f"{'readings':>8} {'rate':>7} {'refusals':>8} {'bad':>5} {'rows/reading':>15} "
          f"{'time/clean':>13} {'requests':>9} {'clean':>6} {'median batch':>12}")
    results = []
    for readings in (int(n) for n in args.readings.split(",")):
        clean = Model(engine, readings, set(), True, args.batch_size,
                      args.request_ms / 1000, 1 / args.rows_per_s, args.unstored).drain()
        for rate in (float(r) for r in args.rates.split(",")):
            for named in (True, False):
                r = measure(engine, args, readings, rate, named, clean)
                results.append(r)
                print(f"{readings:>8} {rate:>7g} {r['refusals']:>8} {r['bad']:>5g} "
                      f"{r['rows_per_reading']:>7.3f} ({r['rows_worst']:.3f}) "
                      f"{r['time_vs_clean']:>6.2f} ({r['time_worst']:.2f}) {r['requests']:>9} "
                      f"{r['clean_requests']:>6} {r['median_batch']:>12g}", flush=True)
                if not rate:
                    break   # no refusals: named or not is the same run
    print("(mean over placements; the worst in brackets)")
    for named in (True, False):
        for r in (lone(engine, args, 200000, named), regrowth(engine, args, named)):
            results.append(r)
            print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
