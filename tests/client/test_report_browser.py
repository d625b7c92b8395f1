"""The HTML report of a real run, opened in real headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from linkage_service.client.api import LinkageClient
from linkage_service.client.report_html import network_view, render_html
from linkage_service.client.synthetic import DEFAULT_STAGES

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


def test_report_charts_have_axes_legends_a_full_frame_and_a_broker_focus(report, browser,
                                                                         tmp_path):
    """Issue 15: the score chart has labelled axes on a log scale with the match region
    marked, the network has a legend, fills its frame and can focus on one broker, and
    group ids stay on one line."""
    from selenium.webdriver.common.by import By

    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    browser.get(page.as_uri())
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    y_ticks = browser.find_elements(By.CSS_SELECTOR, "#histogram-y-axis text.tick")
    assert len(y_ticks) >= 3 and y_ticks[0].text == "0" and y_ticks[1].text == "10"
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#histogram .axis-label")]
    assert "candidate pairs (log scale)" in labels and "Dice similarity of the pair" in labels
    assert browser.find_elements(By.CSS_SELECTOR, "#histogram-x-axis text.tick")
    region = browser.find_element(By.CSS_SELECTOR, "#histogram .match-region")
    assert float(region.get_attribute("width")) > 0
    # The match region's bars are tall enough to read: a bar of a handful of pairs spans
    # a good part of the plot height (on the former square-root scale it was a sliver).
    heights = browser.execute_script(
        "return Array.from(document.querySelectorAll('#histogram rect.bar.above'))"
        ".filter(function (r) { return r.querySelector('title').textContent.match(/: [1-9]/); })"
        ".map(function (r) { return r.getBBox().height; })")
    assert heights and max(heights) > 60
    legend = browser.find_element(By.ID, "network-legend").text
    for words in ("entity at several agencies", "case", "broker rank", *report["agencies"]):
        assert words in legend
    box = browser.execute_script(
        "const b = document.querySelector('#network g:last-of-type').getBBox();"
        "return [b.x, b.y, b.width, b.height];")
    assert box[2] > 850 and box[3] > 850, box  # the layout uses the 1000 x 1000 frame
    edge_colour = browser.execute_script(
        "const s = getComputedStyle(document.querySelector('#network .edge'));"
        "return [s.stroke, s.strokeOpacity, s.strokeWidth];")
    assert float(edge_colour[1]) >= 0.7 and float(edge_colour[2].rstrip("px")) >= 1.2
    options = browser.find_elements(By.CSS_SELECTOR, "#f-focus option")
    assert len(options) > 1
    total = browser.execute_script("return window.linkageReport.nodes")
    broker = options[1].get_attribute("value")
    browser.execute_script(
        "const s = document.getElementById('f-focus'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('change'));", broker)
    shown = browser.execute_script(
        "return document.querySelectorAll('#network .node:not(.hidden)').length")
    assert 1 < shown < total
    assert browser.find_element(By.ID, "details").text.startswith(broker)
    assert browser.find_element(By.ID, "network").get_attribute("viewBox") != "0 0 1000 1000"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("document.getElementById('network').scrollIntoView()")
    browser.save_screenshot(str(ARTIFACTS / "report-focus.png"))
    browser.execute_script(
        "const s = document.getElementById('f-focus'); s.value = '';"
        "s.dispatchEvent(new Event('change'));")
    assert browser.execute_script(
        "return document.querySelectorAll('#network .node:not(.hidden)').length") == total
    wrapped = browser.execute_script(
        "return Array.from(document.querySelectorAll('td.gid')).filter(function (td) {"
        "  const r = document.createRange(); r.selectNodeContents(td);"
        "  return r.getClientRects().length > 1; }).length")
    assert browser.find_elements(By.CSS_SELECTOR, "#groups td.gid") and wrapped == 0
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(ARTIFACTS / "report-top.png"))
