"""The web page's costs: its weight, its time to first render, the memory of the inputs'
history, and the daemon's idle CPU with the page on but closed.

    python -m bench.web                              # this work tree
    python -m bench.web --gateway-dir DIR --idle-only    # the idle CPU of another copy (main)

- weight: the bytes of the page's files (HTML + JS + CSS), as sent and gzip-compressed;
- first render: headless Chromium on this machine, a daemon holding 50 nodes x 10 inputs:
  from navigation start to the login form painted (first-contentful-paint), and with a live
  session, from navigation start to the Watch view drawn with every node (median of 5 loads);
- history: ``InputHistory`` filled for a whole day (1440 minutes) for 50 nodes x 10 inputs:
  the arrays' bytes and what tracemalloc counts (object headers included);
- idle CPU: the daemon with the page on (its history holding 50 x 10 inputs), after the page
  was used then closed, no traffic, for ``--seconds``: CPU % of one core from
  /proc/PID/task/*/schedstat, and wake-ups/s. ``--gateway-dir`` measures another copy the same
  way (``git archive main | tar -x -C /tmp/main``).
"""

import argparse
import gzip
import json
import math
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench import harness
from tests.support.emoncms_server import WRITE_KEY, FakeEmoncms
from tests.support.web_client import PASSWORD, PASSWORD_HASH, Browser

NODES, INPUTS = 50, 10


def weight(static: Path) -> dict:
    files = {p.name: p.read_bytes() for p in sorted(static.iterdir()) if p.suffix in (".html", ".js", ".css")}
    return {"files": {name: len(data) for name, data in files.items()},
            "bytes": sum(len(d) for d in files.values()),
            "gzip_bytes": sum(len(gzip.compress(d, 9)) for d in files.values())}


def history_memory() -> dict:
    from gateway.web.history import SLOTS, STEP, InputHistory
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    history = InputHistory()
    start = 1_700_000_000 - 1_700_000_000 % STEP
    for minute in range(SLOTS):
        for node in range(NODES):
            history.record(str(node), {f"input{i}": math.sin(minute / 60 + i) * 1000 for i in range(INPUTS)},
                           start + minute * STEP)
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"nodes": NODES, "inputs_per_node": INPUTS, "minutes": SLOTS, "array_bytes": history.nbytes(),
            "array_mb": round(history.nbytes() / 1e6, 2), "traced_mb": round(traced / 1e6, 2)}


def _config(folder: Path, port: int, web_port: int, emoncms_url: str) -> Path:
    path = harness.write_config(folder, port, emoncms_url, WRITE_KEY)
    text = path.read_text().replace("[gateway]\n", f"[gateway]\n    web_port = {web_port}\n"
                                                  f"    web_password_hash = {PASSWORD_HASH}\n", 1)
    path.write_text(text)
    return path


def _fill(port: int) -> None:
    lines = b"".join(f"{node} {' '.join(str(node * 10 + i + 0.5) for i in range(INPUTS))}\n".encode()
                     for node in range(1, NODES + 1))
    harness.push_all(port, lines)


def idle_cpu(seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder, FakeEmoncms(max_nodes=64) as emoncms:
        port, web_port = harness.free_port(), harness.free_port()
        daemon = harness.Daemon(_config(Path(folder), port, web_port, emoncms.url), state_dir=folder)
        try:
            daemon.wait_ready()
            _fill(port)
            emoncms.wait_for_rows(NODES * INPUTS, timeout=60)
            browser = Browser(web_port)
            browser.login(PASSWORD)
            for _ in range(3):                     # the page, used ...
                browser.request("GET", "/api/status")
                browser.request("GET", "/api/history?minutes=60")
            time.sleep(5)                           # ... then closed; let the daemon settle
            cpu0, wake0, t0 = daemon.cpu_ns_precise(), daemon.wakeups(), time.monotonic()
            time.sleep(seconds)
            cpu1, wake1, t1 = daemon.cpu_ns_precise(), daemon.wakeups(), time.monotonic()
            return {"seconds": round(t1 - t0, 1), "cpu_pct": round((cpu1 - cpu0) / 1e9 / (t1 - t0) * 100, 4),
                    "wakeups_per_s": round((wake1 - wake0) / (t1 - t0), 2), "rss_mb": round(daemon.rss_mb(), 1)}
        finally:
            daemon.kill()


def first_render(loads: int = 5) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder, FakeEmoncms(max_nodes=64) as emoncms:
        port, web_port = harness.free_port(), harness.free_port()
        daemon = harness.Daemon(_config(Path(folder), port, web_port, emoncms.url), state_dir=folder)
        driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
        try:
            daemon.wait_ready()
            _fill(port)
            url = f"http://127.0.0.1:{web_port}/"
            login_paint, watch_drawn = [], []
            for _ in range(loads):
                driver.delete_all_cookies()
                driver.get(url)
                login_paint.append(driver.execute_async_script("""
                    const done = arguments[arguments.length - 1];
                    new PerformanceObserver(list => done(list.getEntriesByName('first-contentful-paint')[0].startTime))
                      .observe({type: 'paint', buffered: true});"""))
                driver.find_element("id", "password").send_keys(PASSWORD)
                driver.find_element("css selector", "#login-form button").click()
                _wait_for_nodes(driver)
                driver.get(url)                     # a new load with a live session
                watch_drawn.append(_wait_for_nodes(driver))
            return {"loads": loads, "login_form_painted_ms": round(statistics.median(login_paint)),
                    "watch_drawn_ms": round(statistics.median(watch_drawn)), "nodes": NODES, "inputs_per_node": INPUTS}
        finally:
            driver.quit()
            daemon.kill()


def _wait_for_nodes(driver) -> float:
    """ms from navigation start until the Watch view shows every node."""
    return driver.execute_async_script(f"""
        const done = arguments[arguments.length - 1];
        (function check() {{
          if (document.querySelectorAll('#inputs .node').length >= {NODES}) done(performance.now());
          else requestAnimationFrame(check);
        }})();""")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway-dir", help="measure the oemgateway.py in this folder")
    parser.add_argument("--seconds", type=float, default=60, help="length of the idle measurement")
    parser.add_argument("--idle-only", action="store_true", help="only the idle CPU (for another copy)")
    args = parser.parse_args(argv)
    if args.gateway_dir:
        harness.set_gateway_dir(args.gateway_dir)
    results = {}
    if not args.idle_only:
        results["weight"] = weight(harness.DAEMON.parent / "gateway" / "web" / "static")
        results["history"] = history_memory()
        results["first_render"] = first_render()
    results["idle"] = idle_cpu(args.seconds)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
