"""The web page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium): log in, watch a node's value arrive, rename a node in its form, see a
validation error next to the field. A screenshot of the status page is saved to
``test-artifacts/web-status.png`` (or ``$TEST_ARTIFACTS``).

Skipped when Chromium or Selenium is missing, except in CI (``CI`` set), where ``.ci/run``
installs them and a missing browser is a failure.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.support.daemon import ROOT, WAIT, free_port, send_lines
from tests.support.web_client import PASSWORD, web_config


def _driver():
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
                     "--window-size=1280,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


@pytest.fixture
def chrome():
    driver = _driver()
    yield driver
    driver.quit()


def test_the_page_in_chromium(chrome, gateway_factory, emoncms):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    port, web_port = free_port(), free_port()
    gw = gateway_factory(web_config(emoncms, port, web_port))
    gw.wait_for_log("web page on")
    wait = WebDriverWait(chrome, WAIT)

    def text_in(locator, text):
        wait.until(seen.text_to_be_present_in_element(locator, text))

    chrome.get(f"http://127.0.0.1:{web_port}/")
    wait.until(seen.visibility_of_element_located((By.ID, "password"))).send_keys(PASSWORD)
    chrome.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(seen.visibility_of_element_located((By.ID, "listeners")))
    text_in((By.CSS_SELECTOR, "#listeners tbody"), "tcp")

    send_lines(port, b"10 230.5 241\n")
    node_row = (By.CSS_SELECTOR, '#nodes tr[data-node="10"]')
    text_in(node_row, "230.5")
    row = chrome.find_element(*node_row).text
    assert "house (10)" in row and "power 230.5 W" in row and "voltage 241 V" in row
    emoncms.wait_for_rows(2)
    text_in((By.CSS_SELECTOR, "#buffers tbody"), "ok")
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    assert chrome.save_screenshot(str(artifacts / "web-status.png"))

    chrome.find_element(By.CSS_SELECTOR, 'nav button[data-tab="settings"]').click()
    form = (By.CSS_SELECTOR, 'form[data-section="nodes/10"]')
    wait.until(seen.visibility_of_element_located(form))
    nodename = chrome.find_element(By.CSS_SELECTOR, 'form[data-section="nodes/10"] input[name="nodename"]')
    nodename.clear()
    nodename.send_keys("home")
    chrome.find_element(By.CSS_SELECTOR, 'form[data-section="nodes/10"] button[type="submit"]').click()
    text_in((By.ID, "settings-message"), "Saved and applied")
    gw.wait_for_log(r"re-read \(saved on the web page\)")
    assert "nodename = home" in gw.config_path.read_text()

    scales = wait.until(seen.visibility_of_element_located(
        (By.CSS_SELECTOR, 'form[data-section="nodes/10"] input[name="scales"]')))
    scales.send_keys("not a number")
    chrome.find_element(By.CSS_SELECTOR, 'form[data-section="nodes/10"] button[type="submit"]').click()
    text_in((By.CSS_SELECTOR, 'form[data-section="nodes/10"] [data-error="scales"]'), "scales")
    assert "Not saved" in chrome.find_element(By.ID, "settings-message").text
    assert "not a number" not in gw.config_path.read_text()

    chrome.find_element(By.CSS_SELECTOR, 'nav button[data-tab="status"]').click()
    text_in(node_row, "home (10)")


def test_a_meter_bus_shows_each_meter_under_its_listener(chrome, gateway_factory, emoncms, modbus_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.support.modbus_server import SDM120_REGISTERS, SimulatedMeter
    from tests.support.web_client import PASSWORD_HASH, listener_config

    modbus = modbus_server(SimulatedMeter(1, input=SDM120_REGISTERS))
    meter_port, web_port = modbus.start_tcp(), free_port()
    modbus.silent.add(9)
    indent = "\n    "
    gw = gateway_factory(listener_config(emoncms, indent.join((
        "[[bus]]", "type = modbus_tcp", "host = 127.0.0.1", f"port = {meter_port}", "timeout = 0.3",
        "[[[meters]]]", "[[[[electric]]]]", "meter = sdm120", "address = 1", "[[[[gone]]]]", "meter = sdm120",
        "address = 9")), gateway=indent.join(("clock = trusted", f"web_port = {web_port}",
                                               f"web_password_hash = {PASSWORD_HASH}"))))
    gw.wait_for_log("gone: no reading")
    wait = WebDriverWait(chrome, WAIT)
    chrome.get(f"http://127.0.0.1:{web_port}/")
    wait.until(seen.visibility_of_element_located((By.ID, "password"))).send_keys(PASSWORD)
    chrome.find_element(By.CSS_SELECTOR, "#login-form button").click()
    rows = (By.CSS_SELECTOR, "#listeners tbody tr.device")
    wait.until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, "#listeners tbody"), "no answer"))
    electric, gone = [row.text for row in chrome.find_elements(*rows)]
    assert electric.startswith("\u21b3 electric address 1 ok 1 0") and "read in" in electric
    assert gone.startswith("\u21b3 gone address 9 failing 0 1 never") and "no answer from address 9" in gone
