"""The HTML report of a real run, opened in real headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from client.api import LinkageClient
from client.report_html import network_view, render_html
from linkage.synthetic import DEFAULT_STAGES

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must install chromium and chromium-driver (see .ci/run)")
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture
def report(server, coordinator, batches, schema_text):
    names = list(batches)
    tokens = coordinator.create_project("browser", schema_text, names, list(DEFAULT_STAGES))
    for name in names:
        with LinkageClient(server.address, tokens[name]) as agency:
            agency.submit("browser", batches[name])
    coordinator.run("browser", "auto")
    return coordinator.report("browser")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1300,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_holds_no_record_ids(report, batches):
    text = render_html(report)
    for batch in batches.values():
        assert not any(record_id in text for record_id in batch.record_ids)


def test_report_loads_draws_the_network_and_filters(report, browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    expected_nodes = len(network_view(report["network"])["nodes"])
    assert expected_nodes > 10
    browser.get(page.as_uri())
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    nodes = browser.find_elements(By.CSS_SELECTOR, "#network .node")
    assert len(nodes) == expected_nodes
    assert browser.execute_script("return window.linkageReport.nodes") == expected_nodes

    def visible() -> int:
        return browser.execute_script(
            "return document.querySelectorAll('#network .node:not(.hidden)').length")

    assert visible() == expected_nodes
    agency_box = browser.find_elements(By.CSS_SELECTOR, ".f-agency")[0]
    agency_box.click()
    after_agency = visible()
    assert 0 < after_agency < expected_nodes
    assert f"{after_agency} of {expected_nodes}" in browser.find_element(
        By.ID, "visible-count").text
    agency_box.click()
    assert visible() == expected_nodes
    for stage_box in browser.find_elements(By.CSS_SELECTOR, ".f-stage")[:3]:
        stage_box.click()
    assert visible() < expected_nodes
    for stage_box in browser.find_elements(By.CSS_SELECTOR, ".f-stage")[:3]:
        stage_box.click()
    browser.execute_script(
        "document.querySelector('#network circle.node').dispatchEvent("
        "new MouseEvent('click', {bubbles: true}))")
    details = browser.find_element(By.ID, "details").text
    assert details.startswith("g-") and "agencies:" in details
    assert browser.find_elements(By.CSS_SELECTOR, "#brokers tr")
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "report.png"))
    html_text = page.read_text("utf-8")
    assert "http://" not in html_text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html_text
