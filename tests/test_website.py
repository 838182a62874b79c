"""The website in headless Chromium (Debian's, driven by Playwright; no browser download), at a desktop width and
a 390x844 phone: every way in to a search, the keyboard, previews, covers and links, copy timestamp, the filter by
title, the library page, axe-core with zero violations, and a full-page screenshot per page that nothing overflows."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import pytest

from animeback.sources.synthetic import episode_scenes, grab_frame
from tests.conftest import LIBRARY, ROOT
from tests.live_server import Live

pytestmark = pytest.mark.live

AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


def _cover() -> str:
    """A 2x2 PNG as a data URL: a cover that needs no network."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 40, 90)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


COVER = _cover()
BILIBILI = "https://www.bilibili.com/bangumi/play/ss101"
BROKEN = "[Sub] Show One - 03 [1080p].mp4"
COPY = "[Sub] Show One - 05 [1080p].mp4"  # episode 1 again: a repeated sequence the page names


@pytest.fixture(scope="module")
def site(tmp_path_factory, library_template):
    live = Live(tmp_path_factory.mktemp("website"), library_template)
    metadata = {"title": "Show One", "titles": {"native": "ショーワン"}, "cover": COVER, "link": BILIBILI}
    (live.library / "101" / "series.json").write_text(json.dumps(metadata))
    (live.library / "101" / BROKEN).write_bytes(b"this is not a video" * 100)
    shutil.copy(live.library / "101" / LIBRARY[0][1], live.library / "101" / COPY)
    with live.indexed_and_serving():
        yield live


@pytest.fixture(scope="module")
def shots(site) -> dict[str, tuple[Path, float]]:
    found = {}
    for entry in (0, 2):
        series, name, seed, duration = LIBRARY[entry]
        _, start, end = episode_scenes(seed, duration)[1]
        at = round(start + (end - start) * 0.6, 2)
        found[series] = (grab_frame(site.library / series / name, at, site.tmp / f"site-shot-{entry}.png"), at)
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is installed by scripts/setup.sh requirements-dev.txt"
    assert AXE.exists(), "axe-core is installed by scripts/setup.sh requirements-dev.txt (npm)"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


class Visit:
    """A page at one viewport, with what it requested and what failed."""

    def __init__(self, browser, site: Live, viewport: str):
        width, height = VIEWPORTS[viewport]
        phone = viewport == "phone"
        self.context = browser.new_context(
            viewport={"width": width, "height": height},
            is_mobile=phone,
            has_touch=phone,
            permissions=["clipboard-read", "clipboard-write"],
        )
        self.page = self.context.new_page()
        self.site, self.viewport = site, viewport
        self.searches: list[str] = []
        self.bad: list[str] = []
        self.page.on("request", lambda r: self.searches.append(r.url) if "/search" in r.url else None)
        self.page.on("response", lambda r: self.bad.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        self.page.on("requestfailed", self._failed)
        self.page.on("pageerror", lambda e: self.bad.append(f"script error {e}"))
        # Playwright turns on its interception of file choosers when first asked: ask from the start, so that the
        # first chooser a key opens is seen
        self.page.on("filechooser", lambda chooser: None)

    def _failed(self, request) -> None:
        # a player drops the rest of a clip it has enough of, and a page left drops what it was loading
        if request.failure != "net::ERR_ABORTED":
            self.bad.append(f"failed {request.url}: {request.failure}")

    def goto(self, path: str) -> None:
        self.page.goto(self.site.base + path)
        self.page.wait_for_load_state("networkidle")

    def search(self, action) -> list[dict]:
        """Run what starts a search; wait for its answer and for the page to show it; the results."""
        with self.page.expect_response(lambda r: "/search" in r.url) as answer:
            action()
        body = answer.value.json()
        self.page.wait_for_function(
            "() => !['', 'Searching…'].includes(document.getElementById('message').textContent)"
        )
        assert self.page.locator(".result").count() == len(body["result"])
        return body["result"]

    def check_page(self, name: str) -> None:
        """axe-core finds nothing; nothing is wider than the viewport; the full-page screenshot is its width."""
        page = self.page
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")  # through the debugger: the page's CSP stays on
        violations = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                .map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"""
        )
        assert violations == [], (name, self.viewport, violations)
        overflow = page.evaluate(
            """() => { const width = document.documentElement.clientWidth; const wide = [];
              for (const el of document.querySelectorAll('body *')) {
                if (el.closest('[hidden], template')) continue;
                const box = el.getBoundingClientRect();
                if (box.width && box.right > width + 0.5) wide.push(`${el.tagName}.${el.className}#${el.id}`);
              }
              return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 10)}; }"""
        )
        assert overflow["scroll"] <= overflow["width"] and not overflow["wide"], (name, self.viewport, overflow)
        folder = self.site.tmp / "screenshots"
        folder.mkdir(exist_ok=True)
        shot = folder / f"{name}-{self.viewport}.png"
        page.screenshot(path=str(shot), full_page=True)
        from PIL import Image

        assert Image.open(shot).width == VIEWPORTS[self.viewport][0], (name, self.viewport)

    def close(self) -> None:
        assert not self.bad, self.bad  # no 404 (favicon included), no failed request, no script error
        self.context.close()


@pytest.fixture(params=list(VIEWPORTS))
def visit(request, browser, site):
    visit = Visit(browser, site, request.param)
    yield visit
    visit.close()


def _png_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_every_way_in_finds_the_scene(visit, shots, image_host):
    shot, _ = shots["101"]
    folder, base = image_host
    shutil.copy(shot, folder / "shot.png")
    url = f"{base}/shot.png"
    page = visit.page
    visit.goto("/")
    visit.check_page("search-empty")
    ways = {
        "file picker": lambda: page.set_input_files("#file", str(shot)),
        "the same file again": lambda: page.set_input_files("#file", str(shot)),
        "paste": lambda: page.evaluate(
            """b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
              const data = new DataTransfer(); data.items.add(new File([bytes], 'shot.png', {type: 'image/png'}));
              document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true})); }""",
            _png_b64(shot),
        ),
        "drop a file": lambda: page.evaluate(
            """b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
              const data = new DataTransfer(); data.items.add(new File([bytes], 'shot.png', {type: 'image/png'}));
              document.getElementById('drop').dispatchEvent(
                new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true})); }""",
            _png_b64(shot),
        ),
        "drop a link": lambda: page.evaluate(
            """url => { const data = new DataTransfer(); data.setData('text/uri-list', url);
              document.getElementById('drop').dispatchEvent(
                new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true})); }""",
            url,
        ),
        "URL box": lambda: (page.fill("#url", url), page.click("#url-form button")),
        "/?url= link": lambda: page.goto(f"{visit.site.base}/?url={url}"),
    }
    for way, action in ways.items():
        before = len(visit.searches)
        results = visit.search(action)
        assert len(visit.searches) == before + 1, way
        assert results[0]["anilist"]["id"] == 101 and results[0]["episode"] == 1, way
        assert "Show One" in page.locator(".result .title").first.inner_text(), way
    visit.check_page("search-results")


def test_keyboard_reaches_the_file_picker_and_the_drop_zone_opens_it(visit, shots):
    page = visit.page
    visit.goto("/")
    for _ in range(12):  # Tab from the top of the page until "choose a file" has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "choose":
            break
    assert page.evaluate("document.activeElement.id") == "choose"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    visit.search(lambda: chooser.value.set_files(str(shots["101"][0])))
    for key in ("Enter", " "):
        page.focus("#drop")
        with page.expect_file_chooser() as chooser:
            page.keyboard.press(key)
        visit.search(lambda chooser=chooser: chooser.value.set_files(str(shots["101"][0])))


def test_results_preview_on_hover_pause_and_show_cover_links_and_copy_the_moment(visit, shots):
    page = visit.page
    visit.goto("/")
    results = visit.search(lambda: page.set_input_files("#file", str(shots["101"][0])))
    assert len(results) >= 2
    first, second = page.locator(".result video").nth(0), page.locator(".result video").nth(1)
    page.wait_for_function(
        "() => { const v = document.querySelector('.result video'); return !v.paused && v.currentTime > 0; }"
    )
    for video in (first, second):
        assert video.get_attribute("controls") is not None and "Preview of" in video.get_attribute("aria-label")
    assert page.evaluate("document.querySelectorAll('.result video')[1].paused")  # only the best plays by itself
    if visit.viewport == "phone":
        page.locator(".result").nth(1).locator(".title").tap()  # a tap on a result plays its preview
    else:
        page.hover(".result:nth-child(2)")
    page.wait_for_function("() => !document.querySelectorAll('.result video')[1].paused")
    page.evaluate("document.querySelectorAll('.result video')[0].pause()")  # the controls' pause, as a person would
    page.wait_for_timeout(1500)
    assert page.evaluate("document.querySelectorAll('.result video')[0].paused")  # nothing starts it again

    best = page.locator(".result").first
    cover = best.locator("img.cover")
    assert cover.get_attribute("alt") == "Cover of Show One" and cover.evaluate("img => img.naturalWidth") == 2
    links = {a.get_attribute("href"): a.inner_text() for a in best.locator(".actions a").all()}
    assert links == {"https://anilist.co/anime/101": "Show One on AniList", BILIBILI: "Show One on bilibili"}

    segment = best.locator(".segment")  # the copy of episode 1 is stored once and named here
    assert segment.is_visible() and segment.inner_text() == "Repeated scene, episodes 1, 5"
    assert COPY in segment.get_attribute("title") and results[0]["occurrences"][0]["filename"] == COPY
    # a result is named a repeat exactly when the API says it is one (the second result was seen inside the copied
    # stretch too, once, in a run with other work on the cores)
    assert page.locator(".result").nth(1).locator(".segment").is_visible() == bool(results[1]["segment"])

    best.locator(".copy").click()
    at = results[0]["at"]
    ms = round(at * 1000)
    expected = f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
    page.wait_for_function(f"() => document.getElementById('message').textContent.includes('Copied {expected}')")
    assert page.evaluate("navigator.clipboard.readText()") == expected


def test_filter_by_title_and_client_side_errors_clear_old_results(visit, shots, site):
    page = visit.page
    visit.goto("/")
    page.wait_for_function("() => document.querySelectorAll('#series-list option').length === 2")
    shot = str(shots["Other Show"][0])
    page.fill("#series", "show one")  # the title, in any case
    results = visit.search(lambda: page.set_input_files("#file", shot))
    assert "anilistID=101" in visit.searches[-1] and {r["anilist"]["id"] for r in results} == {101}
    page.fill("#series", "Other")  # a part of a title
    results = visit.search(lambda: page.set_input_files("#file", shot))
    assert results[0]["series"] == "Other Show" and {r["series"] for r in results} == {"Other Show"}
    assert page.locator(".result .title").first.inner_text() == "Other Show"  # no series.json: the folder name
    assert f"anilistID={results[0]['anilist']['id']}" in visit.searches[-1]

    searches = len(visit.searches)
    page.fill("#series", "No Such Show")
    page.set_input_files("#file", shot)
    page.wait_for_function("() => document.getElementById('message').textContent.includes('No series')")
    assert page.locator(".result").count() == 0 and len(visit.searches) == searches  # nothing was sent
    page.fill("#series", "")
    visit.search(lambda: page.set_input_files("#file", shot))
    page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
    page.wait_for_function("() => document.getElementById('message').textContent.includes('not an image')")
    assert page.locator(".result").count() == 0  # the earlier results are gone


def test_library_page_lists_series_and_episodes_with_their_status(visit, site):
    page = visit.page
    visit.goto("/library")
    page.wait_for_selector(".series")
    assert int(page.inner_text("#status-episodes")) == len(LIBRARY) + 1
    titles = page.locator(".series h3").all_inner_texts()
    assert [t.split(" #")[0] for t in titles] == ["Other Show", "Show One"]
    show_one = page.locator(".series", has_text="Show One")
    rows = show_one.locator("tbody tr").all_inner_texts()
    assert len(rows) == 4 and sum("indexed" in r for r in rows) == 3
    broken = show_one.locator("tbody tr", has_text=BROKEN)
    assert "failed" in broken.inner_text() and broken.locator(".why").inner_text()
    visit.check_page("library")
    for text in (page.content(), page.evaluate("fetch('/status').then(r => r.text())")):
        assert str(site.tmp) not in text and str(site.library) not in text  # no folder of the installation
    assert str(site.tmp) not in page.evaluate("fetch('/series').then(r => r.text())")

    page.fill("#filter", "failed")
    assert page.locator(".series:visible").count() == 1 and show_one.locator("tbody tr:visible").count() == 1
    page.fill("#filter", "other")
    assert page.locator(".series:visible h3").all_inner_texts()[0].startswith("Other Show")
    assert "1 of 2 series" in page.inner_text("#library-message")
    page.fill("#filter", "")
    assert page.locator(".series:visible").count() == 2
    icon = page.request.get(site.base + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
