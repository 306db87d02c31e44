"""The notebooks in a real browser: JupyterLab runs them and their widgets answer a learner.

nbval runs every notebook but never renders a widget. These tests start a throwaway JupyterLab
(`lab_server.py`) and drive Debian's Chromium, headless, through Playwright: run all
cells as a learner would, then use the widgets. A failing test leaves screenshots and the
server's log in a temp folder and prints where.

The static site (`make html`) is checked in the same browser, without JupyterLab: its maths,
typeset as MathML at build time, is laid out as maths with no network.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lab_server import NOTEBOOKS, LabServer, kernel_is_installed, running_lab
from playwright.sync_api import expect, sync_playwright

from peftlab import html_site, memory

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Never a downloaded browser; no background traffic, which this machine's closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
# notebook 05 reads its fine-tune and sweep from lesson05.results: minutes when not yet cached
RUN_ALL_TIMEOUT_MS = 600_000
REPLY_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"Debian's Chromium is not at {CHROMIUM}: `apt-get install chromium` "
            "(.ci/run does it) to run the JupyterLab browser tests"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory) -> Iterator[LabServer]:
    assert kernel_is_installed(), "the 'peftlab' Jupyter kernel is missing: run `make setup`"
    with running_lab(NOTEBOOKS, tmp_path_factory.mktemp("jupyterlab")) as server:
        yield server


@pytest.fixture
def page(browser, lab):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def offline_page(browser):
    """A page with no JupyterLab behind it, and the list of the http(s) URLs it asked for: all
    refused, as on a learner's machine with no network."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    requested: list[str] = []

    def refuse(route):
        requested.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^https?://"), refuse)
    yield context.new_page(), requested
    context.close()


@contextmanager
def evidence_on_failure(page, lab: LabServer | None, name: str) -> Iterator[None]:
    """On any failure, save a full-page screenshot and the server log (if any), and say where."""
    try:
        yield
    except BaseException:
        folder = Path(tempfile.mkdtemp(prefix=f"peftlab-browser-{name}-"))
        try:
            page.screenshot(path=folder / "page.png", full_page=True)
        finally:
            if lab is not None:
                (folder / "jupyterlab.log").write_text(lab.log_tail(400), encoding="utf-8")
            print(f"browser test failed: screenshot and any JupyterLab log in {folder}")
        raise


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def code_cell_count(name: str) -> int:
    cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
    return sum(cell["cell_type"] == "code" for cell in cells)


def run_all_cells(page, lab: LabServer, name: str) -> None:
    """Open the notebook, clear its saved outputs, run every cell and wait until all have run."""
    page.goto(lab.notebook_url(name))
    kernel = page.locator(".jp-Toolbar-kernelName")
    expect(kernel).to_have_text("Python (peftlab)", timeout=60_000)  # the notebook's own kernel
    idle = ".jp-Notebook-ExecutionIndicator[data-status=idle]"
    page.wait_for_selector(idle, timeout=60_000)
    menu(page, "Edit", "Clear Outputs of All Cells")
    prompts, n_code = page.locator(".jp-CodeCell .jp-InputPrompt"), code_cell_count(name)
    expect(prompts).to_have_count(n_code)
    assert not page.locator(".jupyter-widgets").count(), "outputs were not cleared"
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        """n => {
            const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return p.length === n && p.every(e => /^\\[\\d+\\]:$/.test(e.textContent.trim()));
        }""",
        arg=n_code,
        timeout=RUN_ALL_TIMEOUT_MS,
    )
    page.wait_for_selector(idle)
    outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
    assert not [t for t in outputs if "Traceback (most recent call last)" in t]
    assert not [t for t in outputs if "Error displaying widget" in t]


def test_notebook_01_calculator_redraws_when_the_rank_slider_moves(page, lab):
    with evidence_on_failure(page, lab, "01"):
        run_all_cells(page, lab, "01_full_ft_vs_peft.ipynb")
        slider = page.locator(".widget-slider", has_text="rank r")
        calculator = page.locator(".widget-hbox", has=slider)
        summary = calculator.locator(".widget-html-content")
        figure = calculator.locator(".jp-OutputArea-output img")
        readout = slider.locator(".widget-readout")
        assert readout.inner_text() == "8"
        trainable_at_8 = memory.lora_params("llama-2-7b", 8)
        assert f"trainable {trainable_at_8:,} of" in summary.inner_text()
        plot_before = figure.get_attribute("src")
        assert plot_before.startswith("data:image/png;base64,")

        # Drag the handle most of the way along the track, as a learner would with the mouse.
        slider.scroll_into_view_if_needed()
        handle = slider.locator(".noUi-handle").bounding_box()
        track = slider.locator(".noUi-base").bounding_box()
        page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
        page.mouse.down()
        page.mouse.move(track["x"] + 0.85 * track["width"], handle["y"], steps=10)
        page.mouse.up()

        page.wait_for_function("el => el.textContent.trim() !== '8'", arg=readout.element_handle())
        rank = int(readout.inner_text())
        assert rank > 8
        trainable = memory.lora_params("llama-2-7b", rank)
        page.wait_for_function(
            "([el, text]) => el.textContent.includes(text)",
            arg=[summary.element_handle(), f"trainable {trainable:,} of"],
        )
        page.wait_for_function(
            "([el, old]) => el.src !== old", arg=[figure.element_handle(), plot_before]
        )


def score(reply_html_text: str, side: str) -> float:
    found = re.search(rf"{side} \(score ([0-9.]+)\)", reply_html_text)
    assert found, f"no {side!r} reply with a score in: {reply_html_text!r}"
    return float(found.group(1))


def test_notebook_05_playground_answers_a_typed_complaint(page, lab):
    with evidence_on_failure(page, lab, "05"):
        run_all_cells(page, lab, "05_customer_support_demo.ipynb")
        playground = page.locator(".widget-vbox", has=page.locator("textarea")).last
        output = playground.locator(".widget-html-content").last
        # The notebook's last use of the widget was a blank complaint: a message, no traceback.
        assert "the complaint is empty" in output.inner_text()

        playground.locator("button", has_text="greedy").click()
        playground.locator("textarea").fill("Hello, my blue teapot arrived with a cracked lid.")
        playground.locator("button", has_text="Reply").click()
        page.wait_for_function(
            "el => el.textContent.includes('after (score')",
            arg=output.element_handle(),
            timeout=REPLY_TIMEOUT_MS,
        )
        text = output.inner_text()
        replies = output.locator("blockquote").all_inner_texts()
        assert len(replies) == 2 and all(r.strip() for r in replies), replies
        marks = re.findall(r"[\u2713\u2717] (greeting|acknowledges|action|timeline)", text)
        assert len(marks) == 8, text
        assert score(text, "after") > score(text, "before"), text


def test_site_lesson_page_shows_its_maths_typeset(offline_page, tmp_path):
    """Lesson 02's LoRA equation, built into a site, is laid out by the browser as maths."""
    page, requested = offline_page
    html_site.build_site(tmp_path / "site")
    with evidence_on_failure(page, None, "site-maths"):
        page.goto((tmp_path / "site" / "02-lora.html").as_uri())
        equation = page.locator('math[display="block"]').first
        expect(equation).to_be_visible()
        box = equation.bounding_box()
        assert box["width"] > 100 and box["height"] > 10, box
        text = equation.text_content()  # a MathML element has no innerText
        assert "$" not in text and "\\frac" not in text and "W" in text, text
        # Laid out as MathML, alpha sits above r in the fraction, not beside it as plain text.
        numerator = equation.locator("mfrac > :first-child").first.bounding_box()
        denominator = equation.locator("mfrac > :last-child").first.bounding_box()
        assert numerator["y"] + numerator["height"] <= denominator["y"] + 1, (
            numerator,
            denominator,
        )
        inline = page.locator('math[display="inline"]')
        assert inline.count() > 10
        assert all(b and b["width"] > 0 for b in (m.bounding_box() for m in inline.all()[:10]))
        assert "\\frac" not in page.locator("body").inner_text()
        assert not [url for url in requested if "mathjax" in url.lower()], requested
