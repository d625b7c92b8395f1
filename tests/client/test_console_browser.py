"""``linkage console`` as a person uses it: real server, real console processes, real Chromium.

One project is linked once for the module; a coordinator console and an agency console run as
``python -m client.cli console`` processes against it, and headless Chromium drives them. The
tests run in file order and build on each other (the review decisions, then the follow-up that
the agency answers, then the run that uses the decisions). Screenshots of each view are saved
to test-artifacts/console-*.png.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from linkage_service.client.api import LinkageClient
from linkage_service.client.demo import ServerProcess, end_process
from linkage_service.client.report_html import network_view
from linkage_service.client.synthetic import DEFAULT_STAGES

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PROJECT = "console"
WAIT = 30

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must install chromium and chromium-driver (see .ci/run)")
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

pytestmark = pytest.mark.slow


class ConsoleProcess:
    """``linkage console`` in a child process; ``url`` is the one-time link it printed."""

    def __init__(self, address: str, token_file: Path, log: Path):
        self.command = [sys.executable, "-m", "linkage_service.client.cli", "console", "--server", address,
                        "--token-file", str(token_file), "--project", PROJECT]
        self.log = log
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 90.0) -> "ConsoleProcess":
        with open(self.log, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.PIPE,
                                            stderr=log, text=True)
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if selector.select(timeout=1.0):
                line = self.process.stdout.readline().strip()
                if line.startswith("http://127.0.0.1:"):
                    self.url = line
                    return self
        self.stop()
        raise AssertionError("the console did not print its link:\n" + self.log.read_text())

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.process is None:
            return
        end_process(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


def http(url: str, *, method: str = "GET", headers: dict | None = None,
         body: bytes | None = None) -> tuple[int, bytes]:
    """(status, body) of one request, without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@pytest.fixture(scope="module")
def linked(tmp_path_factory, batches, schema_text, module_store_spec):
    """A real server holding a project of five agencies with one finished run."""
    workdir = tmp_path_factory.mktemp("console")
    with ServerProcess(workdir / "server-data") as server:
        tokens_dir = workdir / "tokens"
        tokens_dir.mkdir()
        coordinator_file = tokens_dir / "coordinator.token"
        coordinator_file.write_text(server.coordinator_token + "\n", encoding="utf-8")
        with LinkageClient(server.address, server.coordinator_token, timeout=300) as client:
            tokens = client.create_project(PROJECT, schema_text, list(batches),
                                           list(DEFAULT_STAGES))
            for name, batch in batches.items():
                with LinkageClient(server.address, tokens[name], timeout=300) as agency:
                    agency.submit(PROJECT, batch)
                (tokens_dir / f"{name}.token").write_text(tokens[name] + "\n", encoding="utf-8")
            client.run(PROJECT, "auto")
            yield {"server": server, "client": client, "workdir": workdir,
                   "coordinator_file": coordinator_file, "tokens_dir": tokens_dir,
                   "facts": {}}


@pytest.fixture(scope="module")
def coordinator_console(linked):
    console = ConsoleProcess(linked["server"].address, linked["coordinator_file"],
                             linked["workdir"] / "coordinator-console.log").start()
    yield console
    console.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"console-chromium-{os.getpid()}"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1300",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(browser, condition, timeout: float = WAIT):
    """Poll ``condition`` until true; an element replaced by a page load or a re-render
    (stale, not there yet, or found in the page that was just replaced) means "not yet",
    not a failure."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    def unless_reloading(driver):
        try:
            return condition(driver)
        except (StaleElementReferenceException, NoSuchElementException):
            raise
        except WebDriverException as error:
            # Chromium's name for an element found in the document a reload just replaced.
            if "does not belong to the document" in str(error):
                return False
            raise

    return WebDriverWait(browser, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,
                                             NoSuchElementException)).until(unless_reloading)


def severe_errors(browser) -> list[dict]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(browser, name: str) -> None:
    """The whole page (up to 4000 px tall) as test-artifacts/console-NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1400, "height": min(max(height, 800), 4000), "deviceScaleFactor": 1,
        "mobile": False})
    try:
        browser.save_screenshot(str(ARTIFACTS / f"console-{name}.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def no_record_ids(text: str, batches, *, except_agency: str | None = None) -> None:
    for name, batch in batches.items():
        if name == except_agency:
            continue
        leaked = [record_id for record_id in batch.record_ids if record_id in text]
        assert leaked == [], f"{name}'s record ids appear on the page: {leaked[:3]}"


def cli_report(linked) -> dict:
    """The report through the real CLI, as a coordinator would read it."""
    result = subprocess.run(
        [sys.executable, "-m", "linkage_service.client.cli", "report", "--project", PROJECT, "--format", "json",
         "--server", linked["server"].address, "--token-file", str(linked["coordinator_file"])],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def test_login_with_the_printed_link_opens_the_overview(coordinator_console, browser, linked):
    from selenium.webdriver.common.by import By

    browser.get(coordinator_console.url)
    wait_for(browser, lambda b: b.current_url.endswith("/overview"))
    assert "token=" not in browser.current_url
    report = linked["client"].report(PROJECT)
    assert browser.find_element(By.ID, "run-number").text == str(report["run"])
    assert browser.find_element(By.ID, "precision").text == f"{report['estimated_precision']:.3f}"
    rows = browser.find_elements(By.CSS_SELECTOR, "#agencies tr")
    assert len(rows) == 1 + len(report["agencies"])
    assert PROJECT in browser.find_element(By.ID, "projects").text
    cookie = browser.get_cookie(f"linkage-console-{coordinator_console.port}")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "linkage-console" not in browser.execute_script("return document.cookie")
    assert severe_errors(browser) == []
    screenshot(browser, "overview")


def test_requests_without_the_session_or_the_csrf_token_are_refused(coordinator_console,
                                                                     browser):
    base = coordinator_console.base
    for path in ("/overview", "/review", "/network", "/follow-ups", "/static/console.js",
                 "/api/runs/status"):
        assert http(base + path)[0] == 401, path
    assert http(base + "/api/review", method="POST", body=b"{}",
                headers={"Content-Type": "application/json"})[0] == 401
    status, text = http(coordinator_console.url)  # the printed link, a second time
    assert status == 403 and b"used already" in text
    assert http(base + "/?token=not-the-token")[0] == 403

    cookie_name = f"linkage-console-{coordinator_console.port}"
    session = {"Cookie": f"{cookie_name}={browser.get_cookie(cookie_name)['value']}"}
    assert http(base + "/overview", headers=session)[0] == 200
    assert http(base + "/overview", headers={**session, "Host": "attacker.example"})[0] == 403
    body = json.dumps({"project": "no-such-project"}).encode()
    json_type = {"Content-Type": "application/json"}
    status, text = http(base + "/api/runs", method="POST", body=body,
                        headers={**session, **json_type})
    assert status == 400 and b"CSRF" in text
    status, _ = http(base + "/api/runs", method="POST", body=body,
                     headers={**session, **json_type, "X-CSRFToken": "forged"})
    assert status == 400
    csrf = browser.find_element("css selector", 'meta[name="csrf-token"]').get_attribute(
        "content")
    status, text = http(base + "/api/runs", method="POST", body=body,
                        headers={**session, **json_type, "X-CSRFToken": csrf})
    assert status == 404 and b"No project" in text  # past the CSRF check, refused on its merits


def test_review_queue_accept_by_keyboard_reject_by_mouse(coordinator_console, browser, linked,
                                                          batches):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(coordinator_console.base + "/review")
    items = browser.find_elements(By.CSS_SELECTOR, "#queue li.group")
    report = linked["client"].report(PROJECT)
    waiting = [g for g in report["groups"] if g["needs_review"]]
    assert len(items) == len(waiting) >= 2
    uncertainties = [float(item.find_element(By.TAG_NAME, "meter").get_attribute("value"))
                     for item in items]
    assert uncertainties == sorted(uncertainties, reverse=True)
    assert "The next run uses your decisions" in browser.find_element(By.ID,
                                                                       "queue-summary").text
    assert "selected" in items[0].get_attribute("class")
    no_record_ids(browser.page_source, batches)
    first, second = (item.get_attribute("data-group") for item in items[:2])
    evidence = items[0].find_element(By.CLASS_NAME, "evidence").text
    assert "agencies" in evidence and "records" in evidence

    keys = ActionChains(browser)
    keys.send_keys("n").send_keys("dates and phones agree").send_keys(Keys.ESCAPE)
    keys.send_keys("a").perform()
    wait_for(browser, lambda b: "decided-accepted" in items[0].get_attribute("class"))
    assert items[0].find_element(By.CLASS_NAME, "state").text.lower().startswith("accepted")
    wait_for(browser, lambda b: "selected" in items[1].get_attribute("class"))

    items[1].find_element(By.CLASS_NAME, "note").click()
    items[1].find_element(By.CLASS_NAME, "note").send_keys("different birth years")
    items[1].find_element(By.CSS_SELECTOR, "button.reject").click()
    wait_for(browser, lambda b: "decided-rejected" in items[1].get_attribute("class"))
    assert browser.find_element(By.ID, "waiting-count").text == str(len(waiting) - 2)
    assert severe_errors(browser) == []
    screenshot(browser, "review")

    decisions = {g["id"]: (g["review"], g["review_note"]) for g in cli_report(linked)["groups"]}
    assert decisions[first] == ("accepted", "dates and phones agree")
    assert decisions[second] == ("rejected", "different birth years")
    browser.refresh()
    decided = browser.find_element(By.ID, "decided").text
    assert first in decided and second in decided
    assert len(browser.find_elements(By.CSS_SELECTOR, "#queue li.group")) == len(waiting) - 2
    linked["facts"]["reviewed"] = (first, second)


def test_network_filters_and_a_follow_up_from_a_broker(coordinator_console, browser, linked,
                                                       batches):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(coordinator_console.base + "/network")
    report = linked["client"].report(PROJECT)
    expected = len(network_view(report["network"])["nodes"])
    assert expected > 10
    wait_for(browser, lambda b: b.execute_script("return window.linkageConsole && "
                                                 "window.linkageConsole.nodes") == expected)
    no_record_ids(browser.page_source, batches)

    def visible() -> int:
        return browser.execute_script(
            "return document.querySelectorAll('#network .node:not(.hidden)').length")

    def brokers_listed() -> int:
        return len([row for row in browser.find_elements(By.CSS_SELECTOR, "#brokers tr.broker-row")
                    if row.is_displayed()])

    all_brokers = brokers_listed()
    assert visible() == expected and all_brokers > 0
    agency_box = browser.find_elements(By.CSS_SELECTOR, ".f-agency")[0]
    agency_box.click()
    assert 0 < visible() < expected
    assert f"of {expected} nodes shown" in browser.find_element(By.ID, "visible-count").text
    agency_box.click()
    assert visible() == expected
    stage_boxes = browser.find_elements(By.CSS_SELECTOR, ".f-stage")
    for box in stage_boxes[:3]:
        box.click()
    assert visible() < expected and brokers_listed() <= all_brokers
    for box in stage_boxes[:3]:
        box.click()
    entity_types = [o.get_attribute("value") for o in
                    Select(browser.find_element(By.ID, "f-type")).options][1:]
    assert entity_types
    Select(browser.find_element(By.ID, "f-type")).select_by_value(entity_types[0])
    shown_types = browser.execute_script(
        "return Array.from(document.querySelectorAll('#network circle.node:not(.hidden)'))"
        ".map(function (el) { return el.getAttribute('data-id'); })")
    nodes = {n["id"]: n for n in network_view(report["network"])["nodes"]}
    assert shown_types and {nodes[i]["entity_type"] for i in shown_types} == {entity_types[0]}
    Select(browser.find_element(By.ID, "f-type")).select_by_value("")
    assert visible() == expected

    row = browser.find_elements(By.CSS_SELECTOR, "#brokers tr.broker-row")[0]
    group = row.get_attribute("data-group")
    row.click()
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#details .b-id")
             and b.find_element(By.CSS_SELECTOR, "#details .b-id").text == group)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#details .b-matrix tr")) >= 2
    assert browser.find_element(By.CSS_SELECTOR, "#details .b-why").text.startswith(
        "Broker rank 1:")
    lit = browser.execute_script("return document.querySelectorAll('#network .node.lit').length")
    assert lit >= 2
    panel = browser.find_element(By.ID, "details")
    panel.find_element(By.CSS_SELECTOR, ".b-open .note").send_keys("port case AN.12")
    panel.find_element(By.CSS_SELECTOR, ".b-open-button").click()
    wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#details .b-opened")
             .text.startswith("Opened f-"))
    assert severe_errors(browser) == []
    screenshot(browser, "network")

    follow_ups = next(g for g in linked["client"].report(PROJECT)["groups"]
                      if g["id"] == group)["follow_ups"]
    assert follow_ups
    assert {(f["note"], f["status"], f["requested_by"]) for f in follow_ups} == {
        ("port case AN.12", "open", "coordinator")}
    linked["facts"]["broker_follow_ups"] = follow_ups


def test_follow_ups_page_lists_requests_and_opens_one(coordinator_console, browser, linked):
    from selenium.webdriver.common.by import By

    browser.get(coordinator_console.base + "/follow-ups")
    table = browser.find_element(By.ID, "follow-ups").text
    for follow_up in linked["facts"]["broker_follow_ups"]:
        assert follow_up["id"] in table
    assert "open" in table
    accepted, _ = linked["facts"]["reviewed"]
    browser.find_element(By.ID, "open-group").send_keys(accepted)
    browser.find_element(By.ID, "open-note").send_keys("confirm identity")
    browser.find_element(By.ID, "open-submit").click()
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".flash")
             and "Opened f-" in b.find_element(By.CSS_SELECTOR, ".flash").text)
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "#follow-ups tr[data-id]")
            if accepted in r.text]
    assert rows and all("confirm identity" in r.text for r in rows)
    assert severe_errors(browser) == []
    screenshot(browser, "follow-ups")


def test_agency_console_hits_csv_and_answering_a_follow_up(linked, browser, batches):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    asked = linked["facts"]["broker_follow_ups"][0]
    agency = asked["agency"]
    console = ConsoleProcess(linked["server"].address,
                             linked["tokens_dir"] / f"{agency}.token",
                             linked["workdir"] / "agency-console.log").start()
    try:
        browser.get(console.url)
        wait_for(browser, lambda b: b.current_url.endswith("/hits"))
        assert browser.find_element(By.CSS_SELECTOR, ".role").text.lower() == "agency"
        own = set(batches[agency].record_ids)
        records = [row.find_elements(By.TAG_NAME, "td")[0].text
                   for row in browser.find_elements(By.CSS_SELECTOR, "#hits tr")[1:]]
        assert records and set(records) <= own
        no_record_ids(browser.page_source, batches, except_agency=agency)
        token = (linked["tokens_dir"] / f"{agency}.token").read_text("utf-8").strip()
        with LinkageClient(linked["server"].address, token) as agency_client:
            hits = list(agency_client.results(PROJECT))
        assert len(records) == sum(1 for h in hits if h["agencies"])

        other = Select(browser.find_element(By.ID, "f-hit-agency")).options[1].text
        Select(browser.find_element(By.ID, "f-hit-agency")).select_by_visible_text(other)
        browser.find_element(By.ID, "f-hit-apply").click()
        wait_for(browser, lambda b: "agency=" in b.current_url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#hits tr")[1:]
        assert rows and all(other in r.find_elements(By.TAG_NAME, "td")[2].text for r in rows)
        assert len(rows) < len(records)
        screenshot(browser, "agency-hits")

        cookie_name = f"linkage-console-{console.port}"
        session = {"Cookie": f"{cookie_name}={browser.get_cookie(cookie_name)['value']}"}
        export = browser.find_element(By.ID, "export-csv").get_attribute("href")
        status, data = http(export, headers=session)
        assert status == 200
        exported = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        assert len(exported) == len(rows)
        assert all(other in line["other_agencies"].split(";") and line["record"] in own
                   for line in exported)
        assert http(export)[0] == 401

        browser.find_element(By.ID, "nav-follow-ups").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "asked"))
        row = browser.find_element(By.CSS_SELECTOR, f'#asked tr[data-id="{asked["id"]}"]')
        assert "open" in row.text and "port case AN.12" in row.text
        row.find_element(By.CSS_SELECTOR, "input.note").send_keys("file sent via SIENA")
        row.find_element(By.CSS_SELECTOR, "button.approve").click()
        wait_for(browser, lambda b: "approved" in b.find_element(
            By.CSS_SELECTOR, f'#asked tr[data-id="{asked["id"]}"]').text)
        assert "file sent via SIENA" in browser.find_element(
            By.CSS_SELECTOR, f'#asked tr[data-id="{asked["id"]}"]').text

        own_group = next(h["group"] for h in hits if h["agencies"])
        browser.find_element(By.ID, "open-group").send_keys(own_group)
        browser.find_element(By.ID, "open-note").send_keys("our case 17")
        browser.find_element(By.ID, "open-submit").click()
        wait_for(browser, lambda b: "Opened f-" in b.find_element(By.CSS_SELECTOR, ".flash").text)
        opened = re.findall(r"f-\d+", browser.find_element(By.CSS_SELECTOR, ".flash").text)
        requested = browser.find_elements(By.ID, "requested")
        if requested:  # the server returns the agency's own requests with its results
            assert all(f in requested[0].text for f in opened)
        else:  # it does not yet: the page says so instead of showing nothing silently
            assert "do not show here yet" in browser.find_element(By.ID, "requested-none").text
        assert severe_errors(browser) == []
        screenshot(browser, "agency-follow-ups")
    finally:
        console.stop()

    answered = next(f for g in linked["client"].report(PROJECT)["groups"]
                    for f in g["follow_ups"] if f["id"] == asked["id"])
    assert answered["status"] == "approved" and answered["answer_note"] == "file sent via SIENA"


def test_coordinator_sees_the_answer_and_starts_a_run_that_uses_the_reviews(
        coordinator_console, browser, linked):
    from selenium.webdriver.common.by import By

    asked = linked["facts"]["broker_follow_ups"][0]
    browser.get(coordinator_console.base + "/follow-ups")
    row = browser.find_element(By.CSS_SELECTOR, f'#follow-ups tr[data-id="{asked["id"]}"]')
    assert "approved" in row.text and "file sent via SIENA" in row.text

    browser.get(coordinator_console.base + "/overview")
    before = linked["client"].report(PROJECT)["run"]
    browser.find_element(By.ID, "run-start").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "run-stage").text.startswith(
        ("Running", "Run ")))
    seen = browser.find_element(By.ID, "run-stage").text
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-number")
             and b.find_element(By.ID, "run-number").text == str(before + 1), timeout=240)
    report = linked["client"].report(PROJECT)
    assert report["summary"]["reviews_used"]["accepted"] >= 1
    assert report["summary"]["reviews_used"]["rejected"] >= 1
    assert browser.find_elements(By.CSS_SELECTOR, "#console-runs tr")
    assert f"Since run {before}" in browser.find_element(By.ID, "changes").text
    assert seen  # the page showed the run's progress before it reloaded
    assert severe_errors(browser) == []
    screenshot(browser, "overview-after-run")
