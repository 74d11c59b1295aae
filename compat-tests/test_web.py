"""The web console at `/` driven as a person would, in headless Chromium (Playwright
with the system's /usr/bin/chromium; no browser download): the page loads cleanly with
nothing from outside the broker, the overview plots throughput that moves when records
are produced, topics are created, configured, grown, browsed by offset and by time and
deleted through the page, a view is written with a dry run over real records and then
read by librdkafka, a script error shows its line and column, a group's lag and offset
reset (refused with 409 while a member is active), a pending delay is cancelled, a
quota is set, and a broker with --console-token refuses changes until the page has it.

Every test fails on a browser console error, a failed request, an unexpected 4xx/5xx
from the API or any request that leaves the broker's origin. Waits are Playwright's
auto-waiting assertions (the page refreshes every 2 s), never fixed sleeps.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

from kutil import console_call, consume, create_topic, produce_all, producer

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -r compat-tests/requirements.txt)")
expect = playwright_api.expect
expect.set_options(timeout=10_000)

CHROMIUM = os.environ.get("KAIROS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install chromium (or set KAIROS_CHROMIUM)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


class UI:
    """One browser tab on a broker's console, recording everything that went wrong."""

    def __init__(self, browser, broker):
        self.broker = broker
        self.ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        self.ctx.set_default_timeout(10_000)
        self.page = self.ctx.new_page()
        self.allowed: set[int] = set()
        self.console_errors: list[str] = []
        self.bad_responses: list[tuple[int, str]] = []
        self.failed: list[str] = []
        self.foreign: list[str] = []
        p = self.page
        p.on("console", self._console)
        p.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))
        p.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))
        p.on("response", self._response)
        p.on("request", self._request)

    def _console(self, m):
        if m.type != "error":
            return
        status = re.search(r"status of (\d{3})", m.text)
        if status and int(status.group(1)) in self.allowed:
            return
        self.console_errors.append(f"{m.text} ({m.location.get('url', '')})")

    def _response(self, r):
        if r.status >= 400:
            self.bad_responses.append((r.status, f"{r.request.method} {r.url}"))

    def _request(self, r):
        if not (r.url.startswith(self.broker.console + "/") or r.url.startswith("data:")):
            self.foreign.append(r.url)

    def expect_status(self, *codes: int) -> None:
        """API answers with these statuses are part of the test (shown in the page)."""
        self.allowed.update(codes)

    def check(self) -> None:
        bad = [b for b in self.bad_responses if b[0] not in self.allowed]
        assert not self.console_errors, f"browser console errors: {self.console_errors}"
        assert not bad, f"unexpected error responses: {bad}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.foreign, f"requests outside the broker's console: {self.foreign}"

    def goto(self, route: str) -> None:
        self.page.goto(f"{self.broker.console}/#/{route}")

    def tid(self, testid: str, root=None):
        return (root or self.page).get_by_test_id(testid)

    def row(self, testid: str, attr: str, value: str):
        return self.page.locator(f'[data-testid="{testid}"][data-{attr}="{value}"]')

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def open_ui(chromium):
    uis: list[UI] = []

    def open_(broker) -> UI:
        ui = UI(chromium, broker)
        uis.append(ui)
        return ui

    yield open_
    for ui in uis:
        ui.close()


@pytest.fixture
def ui(open_ui, broker) -> UI:
    return open_ui(broker)


def api(broker, method, path, body=None, **kw):
    return console_call(broker, method, path, body, **kw)


def quotas_missing(broker) -> str | None:
    code, body = api(broker, "GET", "/api/v1/quotas")
    return None if code == 200 else f"GET /api/v1/quotas answers {code} {body}"


# ----------------------------------------------------------------------------- tests
def test_page_loads_every_tab_without_errors(broker, ui):
    # the three files: small, right types, revalidated on every load
    sizes = {}
    for path, ctype in [("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")]:
        with urllib.request.urlopen(broker.console + path, timeout=5) as r:
            assert r.status == 200
            assert r.headers["content-type"].startswith(ctype), (path, r.headers["content-type"])
            assert r.headers["cache-control"] == "no-cache", path
            sizes[path] = len(r.read())
            etag = r.headers["etag"]
        # a reload revalidates: 304 while the file is the same
        req = urllib.request.Request(broker.console + path, headers={"if-none-match": etag})
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError(f"{path}: 200 although the ETag matched")
        except urllib.error.HTTPError as e:
            assert e.code == 304, (path, e.code)
    assert sizes["/"] < 8_000 and sum(sizes.values()) < 200_000, sizes

    _, b = api(broker, "GET", "/api/v1/broker")
    missing = quotas_missing(broker)
    if missing:
        ui.expect_status(501)  # shown in the quotas panel; see test_quotas
    ui.goto("")
    page = ui.page
    expect(ui.tid("broker-version")).to_have_text(b["version"])
    expect(ui.tid("broker-cluster")).to_have_text(b["cluster_id"])
    expect(ui.tid("broker-listen")).to_have_text(broker.bootstrap)
    expect(ui.tid("throughput-bytes")).to_be_visible()
    expect(page).to_have_title(re.compile("Overview"))
    for tab, ready in [("topics", "topics-table"), ("groups", "groups-table"), ("delays", "delays-table"),
                       ("views", "views-table"), ("quotas", "quotas-error" if missing else "quotas-table"),
                       ("overview", "storage")]:
        ui.tid(f"tab-{tab}").click()
        expect(page).to_have_url(re.compile(f"#/{tab}$"))
        expect(ui.tid(f"tab-{tab}")).to_have_class(re.compile("active"))
        expect(ui.tid(ready)).to_be_visible()
    if missing:
        expect(ui.tid("quotas-error")).to_contain_text("501")
    # an unknown route says so
    ui.goto("nowhere")
    expect(ui.tid("view")).to_contain_text("No page at #/nowhere")
    assert page.evaluate("performance.getEntriesByName('kairos:first-data').length") == 1
    ui.check()


def test_overview_throughput_plot_moves_after_produce(broker, ui, topic):
    create_topic(broker.bootstrap, topic)
    ui.goto("overview")
    legend = ui.tid("legend-produce-records")
    # two broker samples make the first rate point
    expect(legend).to_have_attribute("data-points", re.compile(r"^[1-9]"))
    assert float(legend.get_attribute("data-max")) == 0
    produce_all(producer(broker.bootstrap), topic, [{"value": b"v" * 1000} for _ in range(500)])
    expect(ui.tid("stat-produced-records")).to_have_text("500")
    ui.page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=legend-produce-records]').dataset.max) > 0")
    ui.page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=legend-produce-bytes]').dataset.max) > 1000")
    # the rate is drawn as a line over at least two points
    line = ui.page.locator('[data-testid=throughput-records] polyline[data-series=produce-records]')
    expect(line).to_have_count(1)
    assert len(line.get_attribute("points").split()) >= 2
    # the storage panel lists the topic with its records
    expect(ui.page.locator('[data-testid=storage-bars]')).to_contain_text(topic)
    ui.check()


def test_topic_create_configs_browse_and_delete(broker, ui, topic):
    page = ui.page
    ui.goto("topics")
    ui.tid("create-topic-name").fill(topic)
    ui.tid("create-topic-partitions").fill("2")
    ui.tid("create-topic-configs").fill("retention.ms=3600000")
    ui.tid("create-topic-submit").click()
    expect(ui.tid("create-topic-msg")).to_contain_text(f"Created topic {topic} with 2 partitions")
    row = ui.row("topic-row", "name", topic)
    expect(row).to_be_visible()
    code, d = api(broker, "GET", f"/api/v1/topics/{topic}")
    assert code == 200 and len(d["partitions"]) == 2, d
    assert d["configs"]["retention.ms"]["value"] == "3600000"

    # a second create of the same name shows the 409
    ui.expect_status(409)
    ui.tid("create-topic-name").fill(topic)
    ui.tid("create-topic-submit").click()
    expect(ui.tid("create-topic-msg")).to_contain_text("409")

    # records with known timestamps; one value is markup that must stay text
    t0 = int(time.time() * 1000) - 60_000
    xss = '<img src=x onerror="window.__xss=1">'
    recs = [{"value": f"v{i}".encode(), "key": f"k{i}".encode(), "partition": 0, "timestamp": t0 + i * 1000,
             "headers": [("h", f"{i}")]} for i in range(10)]
    recs.append({"value": xss.encode(), "partition": 0, "timestamp": t0 + 10_000})
    recs += [{"value": b"p1", "partition": 1} for _ in range(4)]
    produce_all(producer(broker.bootstrap), topic, recs)

    expect(row.get_by_test_id("topic-records")).to_have_text("15")
    row.get_by_test_id("topic-link").click()
    expect(page).to_have_url(re.compile(f"#/topics/{topic}$"))
    expect(ui.tid("topic-name")).to_have_text(topic)
    p0 = ui.row("partition-row", "partition", "0")
    expect(p0.get_by_test_id("high-watermark")).to_have_text("11")
    expect(p0.get_by_test_id("log-start")).to_have_text("0")
    expect(ui.row("partition-row", "partition", "1").get_by_test_id("high-watermark")).to_have_text("4")

    # browse by offset
    ui.tid("browse-offset").fill("3")
    ui.tid("browse-submit").click()
    rows = ui.tid("record-row")
    expect(rows).to_have_count(8)
    expect(rows.first).to_have_attribute("data-offset", "3")
    expect(rows.first.get_by_test_id("record-value")).to_have_text("v3")
    expect(rows.first.get_by_test_id("record-key")).to_have_text("k3")
    expect(rows.first).to_contain_text("h=3")
    last = ui.row("record-row", "offset", "10").get_by_test_id("record-value")
    expect(last).to_have_text(xss)
    assert page.locator('[data-testid=records-table] img').count() == 0
    assert page.evaluate("window.__xss") is None
    # by time: the first record at or after t0 + 5 s is offset 5
    ui.tid("browse-mode").select_option("timestamp")
    ui.tid("browse-timestamp").fill(str(t0 + 5000))
    ui.tid("browse-submit").click()
    expect(rows.first).to_have_attribute("data-offset", "5")
    expect(rows).to_have_count(6)
    # the other partition
    ui.tid("browse-mode").select_option("offset")
    ui.tid("browse-partition").select_option("1")
    ui.tid("browse-offset").fill("0")
    ui.tid("browse-submit").click()
    expect(rows).to_have_count(4)
    expect(ui.tid("browse-msg")).to_contain_text("partition 1: 4 records")

    # configs: change one, then back to its default
    cfg = ui.row("config-value", "key", "retention.ms")
    expect(cfg).to_have_value("3600000")
    cfg.fill("7200000")
    ui.tid("configs-save").click()
    expect(ui.tid("configs-msg")).to_contain_text("retention.ms=7200000")
    assert api(broker, "GET", f"/api/v1/topics/{topic}")[1]["configs"]["retention.ms"]["value"] == "7200000"
    ui.row("config-reset", "key", "retention.ms").click()
    expect(ui.tid("configs-msg")).to_contain_text("retention.ms=(default)")
    assert api(broker, "GET", f"/api/v1/topics/{topic}")[1]["configs"]["retention.ms"]["source"] == "DEFAULT_CONFIG"
    # a bad value shows the broker's 400
    ui.expect_status(400)
    ui.row("config-value", "key", "retention.ms").fill("soon")
    ui.tid("configs-save").click()
    expect(ui.tid("configs-msg")).to_contain_text("400")

    # grow to 3 partitions
    ui.tid("grow-count").fill("3")
    ui.tid("grow-submit").click()
    expect(ui.tid("partition-row")).to_have_count(3)
    expect(ui.tid("topic-partitions")).to_have_text("3")

    # delete (two clicks), back on the list without it
    ui.expect_status(404)  # a refresh of the deleted topic may race the navigation
    ui.tid("delete-topic").click()
    ui.tid("delete-topic-confirm").click()
    expect(page).to_have_url(re.compile("#/topics$"))
    expect(ui.tid("topics-table")).to_be_visible()
    expect(row).to_have_count(0)
    assert api(broker, "GET", f"/api/v1/topics/{topic}")[0] == 404
    ui.check()


CITIES = ["beijing", "paris", "lima", "oslo"]
SCRIPT = """// keep beijing, rename lima, drop the rest
if json.city == "beijing" {
  true
} else if json.city == "lima" {
  #{ city: "LIMA", p: json.price }
} else {
  false
}"""


def test_view_editor_dry_run_save_and_consume(broker, ui, topic):
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), topic,
                [{"value": json.dumps({"city": CITIES[i % 4], "price": i}).encode()} for i in range(12)])
    view = f"{topic}-v"
    ui.goto("views")
    ui.tid("view-name").fill(view)
    ui.tid("view-source").fill(topic)
    ui.tid("view-script").fill(SCRIPT)
    ui.tid("dryrun-limit").fill("12")
    ui.tid("dryrun-submit").click()
    summary = ui.tid("dryrun-summary")
    expect(summary).to_have_attribute("data-kept", "3")
    expect(summary).to_have_attribute("data-dropped", "6")
    expect(summary).to_have_attribute("data-transformed", "3")
    expect(summary).to_contain_text("12 records")
    expect(ui.tid("dryrun-row")).to_have_count(12)
    expect(ui.row("dryrun-row", "offset", "0")).to_have_attribute("data-outcome", "kept")
    expect(ui.row("dryrun-row", "offset", "1")).to_have_attribute("data-outcome", "dropped")
    lima = ui.row("dryrun-row", "offset", "2")
    expect(lima).to_have_attribute("data-outcome", "transformed")
    expect(lima).to_contain_text('"city": "lima"')  # the input value
    expect(lima).to_contain_text('"city":"LIMA"')   # the output
    assert api(broker, "GET", f"/api/v1/views/{view}")[0] == 404, "a dry run saves nothing"

    ui.tid("view-save").click()
    expect(ui.page).to_have_url(re.compile(f"#/views/{view}$"))
    expect(ui.tid("view-save-msg")).to_contain_text(f"Created view {view}")
    expect(ui.row("view-row", "name", view)).to_be_visible()
    expect(ui.tid("view-name")).to_have_value(view)
    expect(ui.tid("view-script")).to_have_value(SCRIPT)
    code, v = api(broker, "GET", f"/api/v1/views/{view}")
    assert code == 200 and v["source"] == topic and v["script"] == SCRIPT, v

    got = consume(broker.bootstrap, view)
    want = [i for i in range(12) if CITIES[i % 4] in ("beijing", "lima")]
    assert [r.offset for r in got] == want
    for r in got:
        j = json.loads(r.value)
        if r.offset % 4 == 0:
            assert j == {"city": "beijing", "price": r.offset}
        else:
            assert j == {"city": "LIMA", "p": r.offset}
    ui.check()


def test_script_syntax_error_shows_line_and_column(broker, ui, topic):
    create_topic(broker.bootstrap, topic)
    bad = 'let x = 1;\nx +* 2'
    code, e = api(broker, "POST", "/api/v1/views/test", {"script": bad, "records": []})
    assert code == 400 and e.get("line") == 2, e
    ui.expect_status(400)
    ui.goto("views")
    ui.tid("view-name").fill(f"{topic}-bad")
    ui.tid("view-source").fill(topic)
    ui.tid("view-script").fill(bad)
    ui.tid("dryrun-submit").click()
    pos = ui.tid("script-error-pos")
    expect(pos).to_have_text(f"line {e['line']}, column {e['column']}")
    expect(ui.tid("script-error")).to_contain_text("x +* 2")
    expect(ui.tid("dryrun-msg")).to_contain_text("does not compile")
    # saving shows the same position, and nothing is created
    ui.tid("view-script").fill("true &&\n\n  (")
    ui.tid("view-save").click()
    expect(ui.tid("view-save-msg")).to_contain_text("400")
    expect(pos).to_have_text(re.compile(r"^line 3, column \d+$"))
    assert api(broker, "GET", f"/api/v1/views/{topic}-bad")[0] == 404
    ui.check()


def test_group_lag_reset_and_409_while_active(broker, ui, topic):
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), topic, [{"value": b"%d" % i} for i in range(20)])
    group = f"{topic}-g<i>x</i>"  # markup in a name stays text
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    c.close()

    ui.goto("groups")
    grow = ui.row("group-row", "group", group)
    expect(grow.get_by_test_id("group-lag")).to_have_text("15")
    expect(grow.get_by_test_id("group-link")).to_have_text(group)
    assert ui.page.locator("[data-testid=groups-table] i").count() == 0
    grow.get_by_test_id("group-link").click()
    expect(ui.tid("group-total-lag")).to_have_text("15")
    off = ui.row("offset-row", "topic", topic)
    expect(off.get_by_test_id("committed")).to_have_text("5")
    expect(off.get_by_test_id("lag")).to_have_text("15")
    expect(ui.tid("legend-lag")).to_have_attribute("data-value", "15")
    expect(ui.tid("members-table")).to_contain_text("no members")

    # empty group: reset to earliest, then to an offset
    expect(ui.tid("reset-topic")).to_have_value(topic)
    ui.tid("reset-to").select_option("earliest")
    ui.tid("reset-submit").click()
    expect(ui.tid("reset-msg")).to_contain_text("partition 0 → 0")
    expect(off.get_by_test_id("lag")).to_have_text("20")
    ui.tid("reset-to").select_option("offset")
    ui.tid("reset-value").fill("12")
    ui.tid("reset-submit").click()
    expect(ui.tid("reset-msg")).to_contain_text("partition 0 → 12")
    expect(off.get_by_test_id("committed")).to_have_text("12")
    expect(ui.tid("group-total-lag")).to_have_text("8")
    code, g = api(broker, "GET", "/api/v1/groups/" + urllib.request.quote(group, safe=""))
    assert code == 200 and g["offsets"][0]["committed"] == 12, g

    # an active member: the reset is refused and the page says why
    ui.expect_status(409)
    member = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
                       "enable.auto.commit": False, "client.id": "web-test-member"})
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 15
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.1)
        assert member.assignment(), "the member got no assignment"
        expect(ui.tid("member-row")).to_have_count(1)
        expect(ui.tid("member-row")).to_contain_text("web-test-member")
        ui.tid("reset-to").select_option("latest")
        ui.tid("reset-submit").click()
        expect(ui.tid("reset-msg")).to_contain_text("409")
        expect(ui.tid("reset-msg")).to_contain_text("active members")
    finally:
        member.close()
    code, g = api(broker, "GET", "/api/v1/groups/" + urllib.request.quote(group, safe=""))
    assert g["offsets"][0]["committed"] == 12, "the refused reset changed nothing"
    ui.check()


def test_delay_pending_and_cancel(broker, ui, topic):
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), f"{topic}.delay",
                [{"value": b"later <b>x</b>", "key": b"k1", "headers": [("kairos-delay-ms", "600000")]}])
    ui.goto("delays")
    trow = ui.row("delay-target-row", "target", topic)
    expect(trow.get_by_test_id("delay-pending")).to_have_text("1")
    trow.get_by_test_id("delay-target-link").click()
    expect(ui.page).to_have_url(re.compile(f"#/delays/{topic}$"))
    drow = ui.tid("delay-row")
    expect(drow).to_have_count(1)
    expect(drow).to_contain_text("later <b>x</b>")
    expect(drow).to_contain_text("in 9m")
    expect(ui.tid("pending-count")).to_have_text("1")
    drow.get_by_test_id("delay-cancel").click()
    expect(ui.tid("cancel-msg")).to_contain_text("Cancelled 0:0")
    expect(drow).to_have_count(0)
    expect(ui.tid("pending-count")).to_have_text("0")
    expect(trow.get_by_test_id("delay-pending")).to_have_text("0")
    code, d = api(broker, "GET", f"/api/v1/delays/{topic}")
    assert code == 200 and d["pending"] == 0, d
    ui.check()


def test_quotas_set_and_list(broker, ui):
    missing = quotas_missing(broker)
    if missing:
        pytest.skip(f"the quotas endpoint is not there yet: {missing}")
    ui.goto("quotas")
    expect(ui.tid("quotas-table")).to_be_visible()
    ui.tid("quota-client").fill("app-1")
    ui.tid("quota-producer").fill("1048576")
    ui.tid("quota-save").click()
    expect(ui.tid("quota-msg")).to_contain_text("Quota for app-1")
    qrow = ui.row("quota-row", "client", "app-1")
    expect(qrow.get_by_test_id("quota-producer-rate")).to_have_attribute("data-value", "1048576")
    expect(qrow.get_by_test_id("quota-consumer-rate")).to_have_text("unlimited")
    # the default quota
    ui.tid("quota-default").check()
    ui.tid("quota-consumer").fill("2000000")
    ui.tid("quota-producer").fill("")
    ui.tid("quota-save").click()
    drow = ui.row("quota-row", "client", "")
    expect(drow.get_by_test_id("quota-consumer-rate")).to_have_attribute("data-value", "2000000")
    code, q = api(broker, "GET", "/api/v1/quotas")
    by = {x["client_id"]: x for x in q["quotas"]}
    assert by["app-1"]["producer_byte_rate"] == 1048576 and by["app-1"]["consumer_byte_rate"] is None, q
    assert by[None]["consumer_byte_rate"] == 2000000, q
    # removing both limits removes the row
    qrow.get_by_test_id("quota-remove").click()
    expect(qrow).to_have_count(0)
    ui.check()


def test_console_token_needed_for_changes(broker_factory, open_ui, topic):
    broker = broker_factory.start("--console-token", "s3cret")
    ui = open_ui(broker)
    ui.expect_status(401)
    ui.goto("topics")
    expect(ui.tid("settings-toggle")).to_have_class(re.compile("needs-token"))
    ui.tid("create-topic-name").fill(topic)
    ui.tid("create-topic-submit").click()
    m = ui.tid("create-topic-msg")
    expect(m).to_contain_text("401 Unauthorized")
    expect(m).to_contain_text("enter it in Settings")
    assert api(broker, "GET", f"/api/v1/topics/{topic}")[0] == 404

    ui.tid("settings-toggle").click()
    ui.tid("token-input").fill("wrong")
    ui.tid("token-save").click()
    expect(ui.tid("token-state")).to_have_text("Token saved.")
    ui.tid("create-topic-submit").click()
    expect(m).to_contain_text("token in Settings was refused")

    ui.tid("token-input").fill("s3cret")
    ui.tid("token-save").click()
    ui.tid("create-topic-submit").click()
    expect(m).to_contain_text(f"Created topic {topic}")
    expect(ui.row("topic-row", "name", topic)).to_be_visible()
    expect(ui.tid("settings-toggle")).not_to_have_class(re.compile("needs-token"))
    assert api(broker, "GET", f"/api/v1/topics/{topic}")[0] == 200
    # the token stays in this browser: a new tab of it can change things too
    page2 = ui.ctx.new_page()
    page2.goto(f"{broker.console}/#/topics")
    assert page2.evaluate("localStorage.getItem('kairos.console.token')") == "s3cret"
    page2.close()
    ui.check()
