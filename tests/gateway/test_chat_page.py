"""The chat page in a real headless Chromium (Debian's chromium + chromium-driver) driven by Selenium."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaychain.settings import Settings
from tests.gateway.conftest import start_gateway, stop_gateway
from tests.support.instant_model import INSTANT_REPLIES, instant_model
from tests.support.openai_server import OpenAITestServer, Reply

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)",
    ),
]

FIRST = "The soles wore out after a month."
SECOND = "Will you replace them?"
THIRD = "And what about the laces?"
MODEL = instant_model("product_review")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def _conversation(driver: object, url: str, screenshot: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(driver, 30)
    driver.get(url)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    Select(driver.find_element(By.ID, "business")).select_by_value("product_review")
    driver.find_element(By.CSS_SELECTOR, "[data-variable=product]").send_keys("Trail boots")
    driver.find_element(By.CSS_SELECTOR, "[data-variable=rating]").send_keys("4")

    def say(text: str) -> object:
        before = len(driver.find_elements(By.CSS_SELECTOR, ".assistant"))
        driver.find_element(By.ID, "message").send_keys(text)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".assistant")) > before)
        return driver.find_elements(By.CSS_SELECTOR, ".assistant")[-1]

    def settled(turn: object) -> str:
        wait.until(lambda _: turn.get_attribute("data-state") != "streaming")
        return str(turn.get_attribute("data-state"))

    first = say(FIRST)
    assert settled(first) == "done", first.text
    # Text streamed in before the final answer arrived.
    assert int(first.get_attribute("data-deltas-before-answer")) > 0
    assert first.find_element(By.CSS_SELECTOR, ".stream").text.strip()
    assert json.loads(first.find_element(By.CSS_SELECTOR, ".output").text) == json.loads(
        INSTANT_REPLIES["product_review"]
    )
    assert "moderation: input: pass" in first.find_element(By.CSS_SELECTOR, ".moderation").text
    assert "tokens: 40 in, 20 out" in first.find_element(By.CSS_SELECTOR, ".usage").text
    wait.until(lambda _: first.get_attribute("data-trace") == "shown")
    assert "generator generate" in first.find_element(By.CSS_SELECTOR, ".trace pre").get_attribute("textContent")

    second = say(SECOND)
    assert settled(second) == "done", second.text
    assert driver.find_element(By.ID, "total-cost").text == "0.00010000 USD"

    third = say(THIRD)
    wait.until(lambda _: third.get_attribute("data-request-id"))
    driver.find_element(By.ID, "cancel").click()
    assert settled(third) == "cancelled", third.text
    assert "Cancelled" in third.find_element(By.CSS_SELECTOR, ".output").text

    # Mistakes are messages, not stack traces.
    blocked = say("click this bomb deal now")
    assert settled(blocked) == "blocked"
    assert "Blocked by moderation on the input (violence)" in blocked.find_element(By.CSS_SELECTOR, ".output").text
    driver.find_element(By.CSS_SELECTOR, "[data-variable=rating]").clear()
    missing = say("Is it any good?")
    assert settled(missing) == "error"
    assert "[missing_variable]" in missing.find_element(By.CSS_SELECTOR, ".output").text
    driver.save_screenshot(str(screenshot))


async def test_conversation_streams_remembers_costs_traces_and_cancels(
    gateway_settings: Settings, model_server: OpenAITestServer, browser: object, tmp_path: Path
) -> None:
    fast = Reply(text=INSTANT_REPLIES["product_review"], input_tokens=40, output_tokens=20)
    model_server.script(MODEL, fast, fast, Reply(text=INSTANT_REPLIES["product_review"], delay_s=30))
    running, task = await start_gateway(gateway_settings, model_server)
    screenshot = tmp_path / "chat.png"
    try:
        await asyncio.to_thread(_conversation, browser, running.url, screenshot)
    finally:
        await stop_gateway(task)

    assert screenshot.stat().st_size > 0
    calls = [r.body for r in model_server.requests if r.model == MODEL]
    prompts = ["\n".join(m["content"] for m in body["messages"]) for body in calls]
    assert FIRST in prompts[0] and SECOND not in prompts[0]
    # Memory: the second turn's prompt carries the first.
    assert FIRST in prompts[1] and SECOND in prompts[1]
