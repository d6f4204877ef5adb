"""The pages in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) against the real app under uvicorn on 127.0.0.1, over the scripted model (and, once,
over the embedded default model). The engine is paced (10 ms a step) so that a stream lasts long
enough to watch and to stop. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from inference import LLMEngine
from tests.web.conftest import LiveServer, page_engine, pool_full, wait_for
from tests.web.page_script import COMPLETION_PROMPT

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1000,900")


@pytest.fixture(scope="module")
def server(page_model):
    engine = page_engine(page_model[1])
    step = engine.step

    def paced_step():
        time.sleep(0.01)
        return step()

    engine.step = paced_step
    server = LiveServer(engine).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def default_server():
    """The server `codellama serve` starts with no model given."""
    server = LiveServer(LLMEngine(None, num_kv_blocks=128, max_num_seqs=4)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which(CHROMIUM) and shutil.which(DRIVER)):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver: apt-get install -y chromium "
                    "chromium-driver (as .ci/run does)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


def until(driver, condition, timeout: float = 10.0):
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: condition())


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


# Records the streamed text each time the DOM of the answer being streamed changes.
WATCH_STREAM = """
window.streamed = [];
new MutationObserver(() => {
  const text = document.querySelector('.streaming .stream-text, .streaming mark');
  if (text) window.streamed.push(text.textContent);
}).observe(document.body, {childList: true, subtree: true, characterData: true});
"""


def open_playground(driver, server, tab: str = "chat") -> None:
    driver.get(server.url + "/")  # returns after the load event: htmx has processed the page
    driver.find_element(By.CSS_SELECTOR, f"label[for=tab-{tab}]").click()
    js(driver, WATCH_STREAM)


def set_max_tokens(driver, n: int) -> None:
    box = driver.find_element(By.NAME, "max_tokens")
    box.clear()
    box.send_keys(str(n))


def test_a_chat_answer_streams_in_token_by_token_and_stays_text(browser, server, page_model):
    script, _ = page_model
    open_playground(browser, server)
    set_max_tokens(browser, len(script.chat_ids))  # the scripted answer, then it would cycle
    box = browser.find_element(By.NAME, "message")
    box.send_keys("<b>sort</b> a list")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    until(browser, lambda: js(browser, "return !!document.querySelector('.msg.assistant .answer')"))

    streamed = [t for t in js(browser, "return window.streamed") if t]
    assert len(set(streamed)) >= 5, streamed  # many updates, each a longer prefix of the answer
    assert all(script.chat_text.startswith(t) for t in streamed)
    prose = js(browser, "return document.querySelector('.answer .prose').textContent")
    code = js(browser, "return document.querySelector('.answer .code pre code').textContent")
    assert prose + "```python\n" + code + "```" == script.chat_text
    assert js(browser, "return document.querySelectorAll('#conversation script, #conversation b').length") == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert
    assert js(browser, "return document.querySelector('.msg.user').textContent") == "<b>sort</b> a list"
    assert box.get_attribute("value") == "" and browser.find_element(By.ID, "chat-send").is_enabled()
    browser.save_screenshot(str(ARTIFACTS / "pages-chat.png"))

    browser.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    browser.find_element(By.CSS_SELECTOR, ".answer button[data-copy]").click()
    until(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".answer button[data-copy]").text == "Copied")
    assert browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])") == code


def test_stop_mid_answer_ends_the_request_on_the_server(browser, server):
    serving, engine = server.serving, server.engine
    stopped, finished = serving.accounting.ended_early["stopped"], serving.accounting.finished_requests
    open_playground(browser, server)
    set_max_tokens(browser, 900)  # the scripted answer cycles: only Stop ends it early
    browser.find_element(By.NAME, "message").send_keys("go on")
    browser.find_element(By.ID, "chat-send").click()
    until(browser, lambda: len(js(browser, "return window.streamed.at(-1) || ''")) > 60)
    assert serving.admission.in_flight == 1 and not browser.find_element(By.ID, "chat-send").is_enabled()
    browser.find_element(By.CSS_SELECTOR, ".streaming button.stop").click()

    until(browser, lambda: js(browser, "return !!document.querySelector('.msg.assistant [data-note]')"))
    assert browser.find_element(By.CSS_SELECTOR, ".msg.assistant [data-note]").text == "Stopped."
    tokens = int(browser.find_element(By.CSS_SELECTOR, ".msg.assistant [data-tokens]").get_attribute("data-tokens"))
    assert 10 < tokens < 900
    assert wait_for(lambda: pool_full(engine)) and serving.admission.in_flight == 0
    assert serving.accounting.ended_early["stopped"] == stopped + 1
    assert serving.accounting.finished_requests == finished  # aborted, not finished
    assert browser.find_element(By.ID, "chat-send").is_enabled()
    browser.save_screenshot(str(ARTIFACTS / "pages-stop.png"))


def test_escape_stops_the_answer_being_streamed(browser, server):
    open_playground(browser, server)
    set_max_tokens(browser, 900)
    box = browser.find_element(By.NAME, "message")
    box.send_keys("go on")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    until(browser, lambda: len(js(browser, "return window.streamed.at(-1) || ''")) > 10)
    box.send_keys(Keys.ESCAPE)
    until(browser, lambda: js(browser, "return !!document.querySelector('.msg.assistant [data-note]')"))
    assert wait_for(lambda: pool_full(server.engine))


def test_an_infill_round_trip_shows_the_whole_code_with_the_middle_marked(browser, server, page_model):
    script, _ = page_model
    open_playground(browser, server, "infill")
    code = browser.find_element(By.NAME, "code").get_attribute("value")
    prefix, suffix = code.split("<FILL>")
    browser.find_element(By.NAME, "code").send_keys(Keys.CONTROL, Keys.ENTER)
    until(browser, lambda: js(browser, "return !!document.querySelector('.result:not(.streaming) mark')"))
    assert [t for t in js(browser, "return window.streamed") if t][-1] == script.infill_text
    shown = js(browser, "return document.querySelector('.result pre code').textContent")
    assert shown == prefix + script.infill_text + suffix
    assert js(browser, "return document.querySelector('.result mark').textContent") == script.infill_text
    browser.save_screenshot(str(ARTIFACTS / "pages-infill.png"))


# Records, whenever the DOM changes while an answer streams, whether the Fill button is disabled.
WATCH_BUTTON = """
window.disabledWhileStreaming = [];
new MutationObserver(() => {
  if (document.querySelector('.streaming')) window.disabledWhileStreaming.push(document.getElementById('infill-send').disabled);
}).observe(document.body, {childList: true, subtree: true, characterData: true, attributes: true});
"""


def test_fill_waits_for_its_answer_and_a_refused_request_clears_the_old_one(browser, server):
    browser.get("about:blank")  # the address may already be /#infill: a fresh load, not a fragment navigation
    browser.get(server.url + "/#infill")  # a linked tab
    assert js(browser, "return document.getElementById('tab-infill').checked")
    js(browser, WATCH_BUTTON)
    browser.find_element(By.ID, "infill-send").click()
    until(browser, lambda: js(browser, "return !!document.querySelector('#infill-result .result:not(.streaming)')"))
    seen = js(browser, "return window.disabledWhileStreaming")
    assert seen and all(seen), seen  # no second answer can be started while one streams
    assert browser.find_element(By.ID, "infill-send").is_enabled()

    box = browser.find_element(By.NAME, "code")
    box.clear()
    box.send_keys("def f(): pass")  # no <FILL>: refused
    browser.find_element(By.ID, "infill-send").click()
    until(browser, lambda: "no <FILL> marker" in browser.find_element(By.ID, "infill-status").text)
    assert js(browser, "return document.getElementById('infill-result').textContent") == ""
    browser.find_element(By.CSS_SELECTOR, "label[for=tab-complete]").click()  # the address follows the tab
    assert js(browser, "return location.hash") == "#complete"


def test_admin_numbers_change_after_a_request(browser, server, page_model):
    script, _ = page_model
    browser.get(server.url + "/admin")

    def shown(selector: str) -> str:
        return js(browser, "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", selector)

    generated = int(shown('[data-metric="generation_tokens"]'))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/v1/completions", json={"prompt": COMPLETION_PROMPT, "max_tokens": 16})
    assert r.json()["choices"][0]["text"] == script.completion_text
    expected = generated + r.json()["usage"]["completion_tokens"]
    until(browser, lambda: shown('[data-metric="generation_tokens"]') == str(expected), timeout=5)
    assert shown('[data-ability="completion"]') == str(server.serving.accounting.requests["completion"])
    browser.save_screenshot(str(ARTIFACTS / "pages-admin.png"))


def test_a_narrow_dark_window_fits_without_sideways_scrolling(browser, server):
    browser.set_window_size(390, 844)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia",
                            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        browser.get(server.url + "/")
        background = js(browser, "return getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(x) for x in background[background.index("(") + 1:-1].split(",")[:3])
        assert red + green + blue < 150  # dark
        assert js(browser, "return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(ARTIFACTS / "pages-narrow-dark.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.set_window_size(1000, 900)


def test_swagger_ui_runs_under_its_content_security_policy(server, browser):
    """The CSP of /docs allows its inline set-up script by hash: the operations render."""
    browser.get(server.url + "/docs")
    assert "frame-ancestors 'none'" in httpx.get(server.url + "/docs").headers["content-security-policy"]
    until(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, ".opblock-summary")) >= 9, timeout=30)
    browser.save_screenshot(str(ARTIFACTS / "docs.png"))


def test_the_default_model_completes_the_playgrounds_prompt_with_python(browser, default_server):
    open_playground(browser, default_server, "complete")
    prompt = browser.find_element(By.NAME, "prompt").get_attribute("value")
    temperature = browser.find_element(By.NAME, "temperature")
    temperature.clear()
    temperature.send_keys("0")
    set_max_tokens(browser, 96)
    browser.find_element(By.ID, "complete-send").click()
    until(browser, lambda: js(browser, "return !!document.querySelector('.result:not(.streaming) mark')"), timeout=60)
    completed = js(browser, "return document.querySelector('.result mark').textContent")
    shown = js(browser, "return document.querySelector('.result pre code').textContent")
    assert shown.startswith(prompt) and prompt.startswith("def ")
    assert re.match(r"\n(    |\t)\S", completed), completed  # an indented body ...
    assert "return" in re.findall(r"\w+", completed), completed  # ... that returns
    browser.save_screenshot(str(ARTIFACTS / "pages-default-model.png"))
