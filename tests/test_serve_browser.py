"""The web app in a real browser: headless Chromium from Debian's packages, driven by
Selenium through Debian's chromedriver, on the demo library, as a person would use it.
Screenshots of each step are kept in $PHOTON_ARTIFACTS (else a pytest temp folder);
PHOTON_DOCS_SCREENSHOTS=1 also writes the README's two to docs/."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from servelib import DemoLibrary, make_demo

from photon_index import image_id

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS = Path(__file__).parent.parent / "docs"
# Read now: the tests run without the PHOTON_ variables of the shell (conftest.py).
ARTIFACTS = os.environ.get("PHOTON_ARTIFACTS")
DOCS_SCREENSHOTS = os.environ.get("PHOTON_DOCS_SCREENSHOTS") == "1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver; .ci/run installs them)",
    ),
]

if CHROMIUM.exists():
    import uvicorn
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.wait import WebDriverWait

    from photon_index.serve.app import create_app


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoLibrary:
    return make_demo(tmp_path_factory.mktemp("photon-demo"))


@pytest.fixture(scope="module")
def server(demo: DemoLibrary) -> Iterator[str]:
    """The app on a free loopback port, in a thread of this process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(demo.index()), log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    running.should_exit = True
    thread.join(timeout=10)


def chromium(*, scripts: bool = True) -> WebDriver:
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
        "--window-size=1280,900",
        f"--user-data-dir={tempfile.mkdtemp(prefix='photon-chromium-')}",
    ):
        options.add_argument(flag)
    if not scripts:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if ARTIFACTS:
        path = Path(ARTIFACTS) / "browser"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def shot(browser: WebDriver, artifacts: Path, request: pytest.FixtureRequest) -> Callable:
    """Saves a screenshot of the page as `<test>-<name>.png` among the artifacts."""

    def take(name: str) -> Path:
        wait_for(browser, pictures_loaded)
        path = artifacts / f"{request.node.name}-{name}.png"
        browser.save_screenshot(str(path))
        return path

    return take


def wait_for(browser: WebDriver, check: Callable[[WebDriver], object], seconds: float = 15):
    # An element found just before the page it is on is replaced goes stale: look again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(browser, seconds, 0.05, ignored_exceptions=ignored).until(check)


def report_saying(text: str) -> Callable[[WebDriver], WebElement | None]:
    """The action report once it says text (the one of an earlier action won't)."""

    def check(browser: WebDriver) -> WebElement | None:
        report = browser.find_element(By.ID, "report")
        return report if text in report.text else None

    return check


def cards(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#grid .card")


def first_card_id(browser: WebDriver) -> str | None:
    found = cards(browser)
    return found[0].get_attribute("data-id") if found else None


def pictures_loaded(browser: WebDriver) -> bool:
    return browser.execute_script(
        "return Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)"
    )


def no_errors(browser: WebDriver) -> None:
    """Nothing the page tried failed: no script error, no blocked or missing resource."""
    wait_for(browser, pictures_loaded)
    problems = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []


def docs_screenshot(path: Path, name: str) -> None:
    """A small copy of a screenshot for the README, when asked for."""
    if not DOCS_SCREENSHOTS:
        return
    DOCS.mkdir(exist_ok=True)
    with Image.open(path) as image:
        small = image.convert("RGB").resize((960, round(image.height * 960 / image.width)))
        small.quantize(colors=128).save(DOCS / name, optimize=True)


def test_type_a_query_and_see_the_right_picture_first(
    browser: WebDriver, server: str, demo: DemoLibrary, shot: Callable
) -> None:
    caption, path = demo.right_caption()
    browser.get(server)
    box = browser.find_element(By.ID, "q")
    box.send_keys(caption)  # no Enter: the results come as one types
    wait_for(browser, lambda b: first_card_id(b) == image_id(path))
    assert browser.current_url.startswith(f"{server}/?q=")  # the address follows the search
    assert len(cards(browser)) == 60
    docs_screenshot(shot("results"), "search.png")
    no_errors(browser)

    # Shift-click selects: one picture, then every one up to the next shift-clicked.
    grid = cards(browser)
    shift_click(browser, grid[1])
    shift_click(browser, grid[4])
    assert browser.find_element(By.ID, "selected-count").text == "4"
    assert browser.find_element(By.ID, "selection").is_displayed()
    assert [c.get_attribute("data-id") for c in selected(browser)] == [
        c.get_attribute("data-id") for c in grid[1:5]
    ]
    assert browser.current_url.startswith(f"{server}/?q=")  # no picture opened
    shot("selected")
    browser.find_element(By.CSS_SELECTOR, '[data-selection="clear"]').click()
    assert selected(browser) == [] and not browser.find_element(By.ID, "selection").is_displayed()


def test_a_tag_chip_keeps_what_was_typed_since_the_page_loaded(
    browser: WebDriver, server: str, demo: DemoLibrary
) -> None:
    browser.get(server)
    browser.find_element(By.ID, "q").send_keys("a star")  # the chips stay as they were
    typed = ("q=a+star", "q=a%20star")
    wait_for(browser, lambda b: any(q in b.current_url for q in typed))
    chip = browser.find_element(By.CSS_SELECTOR, "button.chip.tag")
    tag = chip.get_attribute("value")
    chip.click()
    wait_for(browser, lambda b: "tag=" in b.current_url)
    assert any(q in browser.current_url for q in typed), browser.current_url
    active = browser.find_element(By.CSS_SELECTOR, ".chip.tag.active")
    assert active.text.startswith(tag) and cards(browser)


def shift_click(browser: WebDriver, element: WebElement) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).key_down(Keys.SHIFT).click(element).key_up(Keys.SHIFT).perform()


def selected(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#grid .card.selected")


def test_the_grid_scrolls_on(browser: WebDriver, server: str, demo: DemoLibrary) -> None:
    browser.get(f"{server}/?q=a+star")
    assert len(cards(browser)) == 60
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    wait_for(browser, lambda b: len(cards(b)) == 64)  # the demo's 64 pictures, no more
    ids = [c.get_attribute("data-id") for c in cards(browser)]
    assert len(set(ids)) == 64 and not browser.find_elements(By.CSS_SELECTOR, ".more")


def test_upload_a_picture_and_see_itself_first(
    browser: WebDriver, server: str, demo: DemoLibrary, shot: Callable
) -> None:
    path = sorted(demo.scenes)[21]
    browser.get(server)
    browser.find_element(By.ID, "upload").send_keys(path)
    wait_for(browser, lambda b: "picture=" in b.current_url and first_card_id(b) is not None)
    assert first_card_id(browser) == image_id(path)
    assert "with the uploaded picture" in browser.find_element(By.CSS_SELECTOR, ".chip").text
    shot("uploaded")
    # Typing after it searches with both; the picture stays.
    browser.find_element(By.ID, "q").send_keys("+red")
    wait_for(browser, lambda b: "q=%2Bred" in b.current_url)
    assert "picture=" in browser.current_url and cards(browser)
    no_errors(browser)


def test_drop_a_picture_on_the_page(browser: WebDriver, server: str, demo: DemoLibrary) -> None:
    path = sorted(demo.scenes)[33]
    browser.get(server)
    # What a drag from the file manager delivers: a drop event holding the file.
    browser.execute_script(
        """
        const [address, done] = arguments;
        fetch(address).then((r) => r.blob()).then((blob) => {
          const files = new DataTransfer();
          files.items.add(new File([blob], "dropped.jpg", {type: "image/jpeg"}));
          document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true}));
        });
        """,
        f"/api/images/{image_id(path)}/file",
        None,
    )
    wait_for(browser, lambda b: "picture=" in b.current_url and first_card_id(b) is not None)
    assert first_card_id(browser) == image_id(path)


def test_more_like_this_and_keyboard_navigation(
    browser: WebDriver, server: str, demo: DemoLibrary, shot: Callable
) -> None:
    browser.get(f"{server}/?q=a+star")
    order = [c.get_attribute("data-id") for c in cards(browser)]
    cards(browser)[0].click()
    wait_for(browser, lambda b: b.current_url.startswith(f"{server}/pictures/{order[0]}"))
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    wait_for(browser, lambda b: f"/pictures/{order[1]}?" in b.current_url)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    wait_for(browser, lambda b: f"/pictures/{order[2]}?" in b.current_url)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_LEFT)
    wait_for(browser, lambda b: f"/pictures/{order[1]}?" in b.current_url)
    shot("picture")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait_for(browser, lambda b: b.current_url.startswith(f"{server}/?q=a+star"))
    assert [c.get_attribute("data-id") for c in cards(browser)] == order

    # More like this, from the page of a picture that has an exact copy.
    original = str(demo.pictures / "picture-00000.jpg")
    copy = str(demo.pictures / "copies" / "copy-of-picture-00000.jpg")
    browser.get(f"{server}/pictures/{image_id(original)}")
    meta = browser.find_element(By.CSS_SELECTOR, "dl.meta").text
    assert original in meta and "320 × 240" in meta  # noqa: RUF001
    assert image_id(copy) in browser.find_element(By.CSS_SELECTOR, ".its-duplicates").get_attribute(
        "innerHTML"
    )
    browser.find_element(By.ID, "more-like-this").click()
    wait_for(browser, lambda b: first_card_id(b) == image_id(copy))
    assert image_id(original) not in [c.get_attribute("data-id") for c in cards(browser)]
    no_errors(browser)


def test_review_duplicates_pick_another_keeper_move_and_undo(
    browser: WebDriver, server: str, demo: DemoLibrary, shot: Callable
) -> None:
    browser.get(f"{server}/duplicates")
    groups = browser.find_elements(By.CSS_SELECTOR, "section.group")
    count = len(demo.index().dedupe())
    assert len(groups) == count >= 4
    docs_screenshot(shot("groups"), "duplicates.png")
    group = groups[2]  # a near copy: the full-size original and a smaller re-encoded one
    keeper, smaller = group.find_elements(By.CSS_SELECTOR, "label.member")
    keeper_path = keeper.find_element(By.CSS_SELECTOR, ".path").text
    smaller_path = smaller.find_element(By.CSS_SELECTOR, ".path").text
    assert "suggested" in keeper.text and Path(smaller_path).name.startswith("small-")
    smaller.find_element(By.TAG_NAME, "img").click()  # keep the smaller one instead
    assert smaller.find_element(By.CSS_SELECTOR, ".badge.keep").is_displayed()
    assert keeper.find_element(By.CSS_SELECTOR, ".badge.copy").is_displayed()
    away = demo.root / "moved-away"
    browser.find_element(By.ID, "destination").send_keys(str(away))
    group.find_element(By.CSS_SELECTOR, 'button[value^="move:"]').click()
    wait_for(browser, report_saying("Moved 1 file"))
    moved = away / keeper_path.lstrip("/")
    assert moved.is_file() and not Path(keeper_path).exists() and Path(smaller_path).is_file()
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.group")) == count - 1
    shot("moved")

    browser.find_element(By.ID, "undo").click()
    wait_for(browser, report_saying("Put back 1 file"))
    assert Path(keeper_path).is_file() and not moved.exists()
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.group")) == count
    no_errors(browser)


def test_library_page(browser: WebDriver, server: str) -> None:
    browser.get(f"{server}/library")
    info = browser.find_element(By.ID, "info").text
    assert "siglip-tiny-shapes" in info and "64" in info
    assert "finished" in browser.find_element(By.ID, "run").text  # the demo's index run


def test_plain_browsing_without_scripts(server: str, demo: DemoLibrary) -> None:
    caption, path = demo.right_caption()
    plain = chromium(scripts=False)
    try:
        plain.get(server)
        box = plain.find_element(By.ID, "q")
        box.send_keys(caption, Keys.ENTER)  # the form is sent whole
        wait_for(plain, lambda b: first_card_id(b) == image_id(path))
        next_page_or_card = cards(plain)[0]
        next_page_or_card.click()
        wait_for(plain, lambda b: "/pictures/" in b.current_url)
        plain.find_element(By.CSS_SELECTOR, 'a[rel="next"]').click()
        wait_for(plain, lambda b: "at=1" in b.current_url)
        plain.find_element(By.CSS_SELECTOR, 'a[rel="up"]').click()
        wait_for(plain, lambda b: first_card_id(b) == image_id(path))
        plain.find_element(By.CSS_SELECTOR, ".more").click()  # paged, not scrolled
        wait_for(plain, lambda b: "page=2" in b.current_url and len(cards(b)) == 4)
    finally:
        plain.quit()
