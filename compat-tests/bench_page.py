"""How fast the web console's first screen is (not collected by pytest).

Starts a broker (conftest's Broker, the release binary), creates 50 topics with a few
records each, then loads `/#/topics` in headless Chromium RUNS times, each in a fresh
browser context (empty cache), and prints the medians of:

  * first contentful paint (the shell: header and tabs), from navigation start;
  * the topics table rendered with data (the `kairos:topics-rendered` performance mark
    app.js sets on its first data render), from navigation start;
  * bytes transferred (document, app.js, app.css, first /api calls).

    .venv/bin/python compat-tests/bench_page.py [--runs 5] [--topics 50]

Prints one markdown table row:
| page: /#/topics, 50 topics (median of 5 cold loads) | FCP … ms | topics table … ms | … KiB |
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import Broker  # noqa: E402
from kutil import console_call, produce_all, producer  # noqa: E402

CHROMIUM = os.environ.get("KAIROS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--topics", type=int, default=50)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kairos-bench-page-") as tmp:
        broker = Broker(Path(tmp) / "data", [], Path(tmp), "bench")
        broker.start()
        try:
            names = [f"bench-topic-{i:03d}" for i in range(args.topics)]
            for n in names:
                code, body = console_call(broker, "POST", "/api/v1/topics", {"name": n, "partitions": 3})
                assert code == 201, (n, code, body)
            p = producer(broker.bootstrap)
            produce_all(p, names[0], [{"value": b"x" * 100} for _ in range(10)])
            for n in names:
                produce_all(p, n, [{"value": b"x" * 100, "partition": i % 3} for i in range(6)])
            del p  # closes the producer before the broker goes

            fcp, table, sizes = [], [], []
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                for _ in range(args.runs):
                    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = ctx.new_page()
                    errors: list[str] = []
                    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                    page.goto(f"{broker.console}/#/topics")
                    page.wait_for_function(
                        "() => performance.getEntriesByName('kairos:topics-rendered').length > 0"
                        " && performance.getEntriesByName('first-contentful-paint').length > 0",
                        timeout=15_000)
                    rows = page.locator('[data-testid="topic-row"]').count()
                    assert rows == args.topics, f"the table shows {rows} topics, want {args.topics}"
                    m = page.evaluate("""() => ({
                        fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
                        table: performance.getEntriesByName('kairos:topics-rendered')[0].startTime,
                        bytes: [...performance.getEntriesByType('navigation'),
                                ...performance.getEntriesByType('resource')]
                               .filter(e => e.startTime <= performance.getEntriesByName('kairos:topics-rendered')[0].startTime)
                               .reduce((s, e) => s + (e.transferSize || 0), 0),
                    })""")
                    assert not errors, errors
                    fcp.append(m["fcp"])
                    table.append(m["table"])
                    sizes.append(m["bytes"])
                    ctx.close()
                browser.close()
        finally:
            broker.stop(check=False)

    print(f"runs: FCP {[round(x) for x in fcp]} ms, topics table {[round(x) for x in table]} ms", file=sys.stderr)
    print(f"| page: /#/topics, {args.topics} topics (median of {args.runs} cold loads) "
          f"| FCP {statistics.median(fcp):.0f} ms | topics table {statistics.median(table):.0f} ms "
          f"| {statistics.median(sizes) / 1024:.0f} KiB |")


if __name__ == "__main__":
    main()
