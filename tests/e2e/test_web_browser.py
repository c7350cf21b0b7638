"""The web page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium), the daemon run as the service runs: first-time setup of an emoncms
destination, renaming an input, a validation error shown inline, a stale node changing colour,
an external edit arriving while a form is open; and a screenshot of every view at desktop and
phone width (``test-artifacts/`` or ``$TEST_ARTIFACTS``; ``docs/screenshots/`` holds a copy).

Skipped when Chromium or Selenium is missing, except in CI (``CI`` set), where ``.ci/run``
installs them and a missing browser is a failure.
"""

import difflib
import os
import shutil
from pathlib import Path

import pytest

from tests.support.daemon import ROOT, WAIT, free_port, rewrite_config, send_lines
from tests.support.emoncms_server import WRITE_KEY
from tests.support.web_client import PASSWORD, PASSWORD_HASH, web_config

DESKTOP, PHONE = (1280, 900), (390, 844)


def _driver(size):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or not chromium or not chromedriver:
        message = "needs Debian's chromium and chromium-driver and the selenium package"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs them)")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", "--lang=en-GB"):
        options.add_argument(argument)
    if size == PHONE:   # a phone's screen: narrower than a desktop window may be
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": size[0], "height": size[1],
                                                                              "pixelRatio": 2}})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


class Page:
    """The page in Chromium, with the few moves a user makes."""

    def __init__(self, driver, web_port, size):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as seen
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver, self.By, self.seen, self.size = driver, By, seen, size
        self.wait = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
        self.url = f"http://127.0.0.1:{web_port}/"

    def login(self):
        self.driver.get(self.url)
        self.visible("#password").send_keys(PASSWORD)
        self.find("#login-form button").click()
        self.visible("#tab-watch")
        return self

    def find(self, css):
        return self.driver.find_element(self.By.CSS_SELECTOR, css)

    def visible(self, css):
        return self.wait.until(self.seen.visibility_of_element_located((self.By.CSS_SELECTOR, css)))

    def text_in(self, css, text):
        self.wait.until(self.seen.text_to_be_present_in_element((self.By.CSS_SELECTOR, css), text))
        return self.find(css).text

    def tab(self, name):
        self.find(f'nav button[data-tab="{name}"]').click()
        self.visible(f"#tab-{name}")

    def until(self, condition, what):
        return self.wait.until(lambda driver: condition(), message=what)

    def screenshot(self, name):
        """The whole page (not only the window) as ``name``-<width>.png."""
        width = self.size[0]
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        folder = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(folder / f"{name}-{'phone' if width < 700 else 'desktop'}.png"))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture
def browser():
    drivers = []

    def open_page(web_port, size=DESKTOP):
        driver = _driver(size)
        drivers.append(driver)
        return Page(driver, web_port, size)

    yield open_page
    for driver in drivers:
        driver.quit()


def page_config(port, web_port, buffers=""):
    """A socket listener, no destination (or ``buffers``), the page on ``web_port``."""
    return f"""
    # My gateway.
    [gateway]
        loglevel = DEBUG
        clock = trusted
        web_port = {web_port}
        web_password_hash = {PASSWORD_HASH}

    [listeners]
        # Programs on this machine send their readings here.
        [[tcp]]
            type = socket
            port = {port}

    [buffers]
    {buffers}
    """


def test_first_time_setup_of_an_emoncms_destination(browser, gateway_factory, emoncms):
    port, web_port = free_port(), free_port()
    gw = gateway_factory(page_config(port, web_port))
    page = browser(web_port).login()
    page.text_in("#destinations", "No destination yet")

    page.tab("setup")
    from selenium.webdriver.support.ui import Select
    choose = page.visible('#buffer-forms select[name="choose-type"]')
    assert "emoncms" in [o.get_attribute("value") for o in Select(choose).options]
    Select(choose).select_by_value("emoncms")
    form = 'form[data-section="buffers/emoncms"]'
    assert "Where emoncms lives" in page.visible(form).text        # the setting's description
    url = page.find(f'{form} input[name="url"]')
    assert url.get_attribute("value") == "http://localhost/emoncms"   # the sample's starting point
    url.clear()
    url.send_keys(emoncms.url)
    key = page.find(f'{form} input[name="apikey"]')
    assert key.get_attribute("type") == "password"
    key.send_keys(WRITE_KEY)

    page.find(f"{form} button.test").click()
    page.text_in(f"{form} .result", "Test passed")
    [row] = emoncms.wait_for_rows(1)
    assert (row.node, row.name, row.value) == ("oemgateway", "test", 1)
    assert "[[emoncms]]" not in gw.config_path.read_text()           # a test saves nothing

    page.find(f'{form} button[type="submit"]').click()
    page.text_in("#setup-message", "Saved and applied")
    gw.wait_for_log(r"re-read \(saved on the web page\)")
    saved = gw.config_path.read_text()
    assert f"url = {emoncms.url}" in saved and f"apikey = {WRITE_KEY}" in saved
    assert WRITE_KEY not in page.driver.page_source                  # the key is never shown again

    send_lines(port, b"10 230.5 241\n")
    rows = emoncms.wait_until(lambda rows: any(r.node == "10" for r in rows), what="node 10's readings")
    assert {(r.name, r.value) for r in rows if r.node == "10"} == {("1", 230.5), ("2", 241)}
    page.tab("watch")
    page.text_in('#destinations [data-buffer="emoncms"]', "delivering")
    page.text_in('#inputs .node[data-node="10"]', "emoncms ✓")


def test_renaming_an_input_changes_one_line(browser, gateway_factory, emoncms):
    port, web_port = free_port(), free_port()
    gw = gateway_factory(web_config(emoncms, port, web_port))
    page = browser(web_port).login()
    send_lines(port, b"10 230.5 241\n")
    node = '#inputs .node[data-node="10"]'
    text = page.text_in(node, "230.5")
    assert "house" in text and "230.5 W" in text and "241 V" in text
    before = gw.config_path.read_text()

    page.find(f'{node} tr[data-input="power"] button.rename').click()
    field = page.visible(f"{node} input.rename-input")
    field.clear()
    field.send_keys("solar\n")
    gw.wait_for_log(r"re-read \(saved on the web page\)")
    after = gw.config_path.read_text()
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-names = power, voltage", "+names = solar, voltage"]

    send_lines(port, b"10 1 2\n")
    emoncms.wait_until(lambda rows: any(r.name == "solar" for r in rows), what="the renamed input")
    page.text_in(f'{node} tr[data-input="solar"]', "1 W")


def test_a_validation_error_is_shown_at_its_field(browser, gateway_factory):
    port, web_port = free_port(), free_port()
    gw = gateway_factory(page_config(port, web_port))
    page = browser(web_port).login()
    page.tab("setup")
    form = 'form[data-section="listeners/tcp"]'
    field = page.visible(f'{form} input[name="port"]')
    field.clear()
    field.send_keys("99999")
    page.find(f"{form} h3").click()     # leaving the field checks it, as --check would
    message = page.text_in(f'{form} [data-error="port"]', "too big")
    assert message == 'the value "99999" is too big (expected a whole number from 1 to 65535)'
    assert "invalid" in page.find(f'{form} label[data-key="port"]').get_attribute("class")
    assert f"port = {port}" in gw.config_path.read_text()           # nothing saved
    page.find(f'{form} button[type="submit"]').click()
    page.text_in(f"{form} .result", "Not saved")
    assert f"port = {port}" in gw.config_path.read_text()


def test_a_node_that_falls_silent_changes_colour(browser, gateway_factory, emoncms):
    port, web_port = free_port(), free_port()
    gateway_factory(web_config(emoncms, port, web_port))
    page = browser(web_port).login()
    send_lines(port, b"10 1 2\n")
    send_lines(port, b"10 3 4\n")
    node = '#inputs .node[data-node="10"]'
    page.text_in(node, "3 W")
    assert "node-fresh" in page.find(node).get_attribute("class")
    page.until(lambda: "node-stale" in page.find(node).get_attribute("class"), "node 10 marked late")
    assert "age-stale" in page.find(f'{node} tr[data-input="power"] td.value').get_attribute("class")
    send_lines(port, b"10 5 6\n")
    page.until(lambda: "node-fresh" in page.find(node).get_attribute("class"), "node 10 on time again")


def test_an_external_edit_while_a_form_is_open_is_not_overwritten(browser, gateway_factory, emoncms):
    port, web_port = free_port(), free_port()
    gw = gateway_factory(web_config(emoncms, port, web_port))
    page = browser(web_port).login()
    page.tab("setup")
    form = 'form[data-section="nodes/10"]'
    name = page.visible(f'{form} input[name="nodename"]')
    name.clear()
    name.send_keys("flat")

    edited = gw.config_path.read_text().replace("nodename = house", "nodename = cottage")
    rewrite_config(gw.config_path, edited)
    page.text_in(f"{form} .changed", "changed since this page read it")
    page.find(f'{form} button[type="submit"]').click()
    page.text_in("#setup-message", "Not saved: the config file changed")
    assert gw.config_path.read_text() == edited
    assert page.find(f'{form} input[name="nodename"]').get_attribute("value") == "flat"   # kept

    page.find(f"{form} .changed button").click()     # Reload
    page.until(lambda: page.find(f'{form} input[name="nodename"]').get_attribute("value") == "cottage",
               "the form shows the file's new value")


def test_every_view_at_desktop_and_phone_width(browser, gateway_factory, emoncms):
    """Screenshots for the README; the views must render at both widths."""
    port, web_port = free_port(), free_port()
    archive = ("[[archive]]", "type = emoncms", "url = http://127.0.0.1:9/emoncms", f"apikey = {WRITE_KEY}",
               "retry_max = 30", "[nodes]")
    config = web_config(emoncms, port, web_port).replace("[nodes]", "\n    ".join(archive), 1)
    gw = gateway_factory(config)
    for i in range(3):
        send_lines(port, f"10 {230.5 + i} {241 - i}\n".encode())
    send_lines(port, b"emontx3 12.25 0 1500 21.5 1\n")
    emoncms.wait_for_rows(4)
    gw.wait_for_log("archive")
    for size in (DESKTOP, PHONE):
        page = browser(web_port, size).login()
        page.text_in('#destinations [data-buffer="archive"]', "nothing listens")
        page.screenshot("watch")
        page.find('#inputs .node[data-node="10"] tr[data-input="power"] td.value').click()
        page.visible("#chart svg.chart")
        if size == DESKTOP:   # the pointer over the chart reads the values out
            from selenium.webdriver.common.action_chains import ActionChains
            area = page.find("#chart svg.chart rect")   # at its right end: this minute
            ActionChains(page.driver).move_to_element_with_offset(area, area.size["width"] // 2 - 1, 0).perform()
            assert "power 23" in page.text_in("#chart .readout", " W")
        page.driver.execute_script("document.getElementById('chart-panel').scrollIntoView()")
        page.screenshot("chart")
        page.tab("setup")
        page.visible('form[data-section="buffers/emoncms"]')
        page.text_in("#new-nodes", "emontx3")
        page.screenshot("setup")
        page.tab("file")
        area = page.visible("#config-text")
        page.driver.execute_script("arguments[0].value = arguments[0].value.replace('port = ', 'port = x'); "
                                   "arguments[0].dispatchEvent(new Event('input'))", area)
        page.find("#config-check").click()
        page.text_in("#config-message", "Not valid (nothing saved)")
        assert page.find("#gutter div.bad")
        page.screenshot("config-file")
