"""The HTML report of a suite (``index.html``, ``cells/<run id>.html``): built from a small fake suite
folder (a layout and results.json files, no model), checked as text without a browser, then in Debian's
headless Chromium through selenium (skipped where it is not installed)."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from clipunlearn.benchmark import html_report
from clipunlearn.benchmark.html_report import inline, page_name, script_json
from clipunlearn.benchmark.report import build_view, write_report

EVIL = "<script>alert(1)</script>"
CLASSES = ("leopard", EVIL)
METHODS = ("lip", "amns")
SEEDS = (0, 1)
BAR = {"target": 0.2, "other_classes": 0.9, "other_datasets": 0.95, "avg_score": 0.1}


def _run_id(method: str, klass: str, seed: int) -> str:
    return f"{method}-caltech101-{'evil' if klass == EVIL else klass}-s{seed}-{seed:012d}"


def _results(method: str, klass: str, seed: int, i: int, synthetic: str = "synthetic") -> dict:
    """A results.json of a class run with the fields the report reads (figures varied by ``i``)."""
    after = round(0.05 * i, 3)
    ks = {"1": 0.9 - after, "5": 0.8 - after}
    return {
        "schema_version": 2, "model": {"arch": "mini-rn", "source": "zoo", "family": "resnet"},
        "method": method, "preset": "default", "ablation": None, "zero_shot": "ZS", "dataset": "caltech101",
        "classes": [klass], "target_before": 0.8, "target_after": after,
        "per_target": {klass: {"before": 0.8, "after": after}},
        "other_classes_before": 0.5, "other_classes_after": 0.5 - after / 10,
        "datasets": {"cifar10": {"before": 0.6, "after": 0.6 - after / 5}}, "avg_score": 0.1 + after / 2,
        "retrieval": {w: {"ks": [1, 5], "ift": {"target": ks}, "ifi": {"target": ks}} for w in ("before", "after")},
        "synthetic_acc_before": 1.0, "synthetic_acc_after": after,
        "data_seen": {"synthetic_forget": {"n": 4, "source": synthetic}}, "steps": [], "epochs": 2,
        "stopped_because": "reached max_epochs (2)", "kept_any_step": True, "changed_tensors": [],
        "seconds": {"forgetting": 1.5, "evaluation": 2.0},
        "settings": {"seed": seed, "options": {}, "run_spec": {"run_id": _run_id(method, klass, seed)}},
    }


def _png(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), colour).save(path)


def make_fake_suite(out: Path) -> Path:
    """A suite folder of 8 finished cells (2 methods x 2 classes, one named ``EVIL``, x 2 seeds) with a
    forgetting, a bar and an audit table; one cell has a synthetic image grid, one an audit with a plot."""
    cells = []
    for i, (method, klass, seed) in enumerate((m, c, s) for m in METHODS for c in CLASSES for s in SEEDS):
        rid = _run_id(method, klass, seed)
        (out / "runs" / rid).mkdir(parents=True)
        synthetic = f"synthetic ({out.resolve()}/cache/syn.safetensors)"  # a folder of this machine
        (out / "runs" / rid / "results.json").write_text(json.dumps(_results(method, klass, seed, i, synthetic)))
        cells.append({"model": "mini-rn", "run_id": rid, "setting": ""})
    first = cells[0]["run_id"]
    _png(out / "runs" / first / "synthetic.png", (200, 40, 40))
    audit = out / "runs" / first / "audit"
    _png(audit / "prompts.png", (40, 40, 200))
    (audit / "audit.md").write_text("# Audit\n")
    (audit / "audit.json").write_text(json.dumps({
        "models": ["original", "forgotten"], "results": {}, "plots": ["prompts.png"],
        "verdict": [{"attack": "prompts", "verdict": "recovered", "figure": f"0.6 vs before 0.8 ({EVIL})",
                     "threshold": "best other-prompt accuracy after > 0.5 × before"}]}))
    table = {"goal": {}, "claims": [], "bar": {}, "class_rule": False}
    layout = {"suite": "fake", "description": f"a fake suite {EVIL}", "seeds": list(SEEDS), "classes": {},
              "tables": [{**table, "name": "forgetting", "title": "every method per class", "show": "forgetting",
                          "group_by": ["classes", "method"], "cells": cells},
                         {**table, "name": "bar", "title": "the bar", "show": "bar", "group_by": ["method"],
                          "cells": cells, "bar": BAR},
                         {**table, "name": "audit", "title": "audit", "show": "audit", "group_by": ["method"],
                          "cells": cells[:1]}]}
    (out / "suite.json").write_text(json.dumps(layout))
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """The report of the fake suite, written elsewhere than the suite's folder (``.../page``)."""
    root = tmp_path_factory.mktemp("html")
    make_fake_suite(root / "suite")
    write_report(root / "suite", root / "page")
    return root / "page"


class _Parsed(HTMLParser):
    """The tables (rows of cell texts), links and script elements of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[dict[str, str | None]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table and self._in_body:
            self.tables[self._table].append([])
        elif tag == "td" and self._table and self._in_body:
            self._cell = []
        elif tag == "a":
            self.links.append((a.get("href") or "", a))
        elif tag == "script":
            self.scripts.append(a)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> _Parsed:
    parsed = _Parsed()
    parsed.feed(path.read_text(encoding="utf-8"))
    return parsed


# --- without a browser ----------------------------------------------------------------------------------


def test_every_table_of_the_markdown_is_in_the_page_row_for_row(page):
    parsed = _parse(page / "index.html")
    for name in ("forgetting", "bar", "audit"):
        csv = pd.read_csv(page / "tables" / f"{name}.csv", dtype=str, keep_default_na=False)
        rows = parsed.tables[f"tbl-t-{name}"]
        assert rows == [[v if v != "" else "–" for v in r] for r in csv.astype(str).values.tolist()], name
    assert any("±" in cell for row in parsed.tables["tbl-t-forgetting"] for cell in row)  # mean ± std kept
    assert len(parsed.tables["tbl-runs"]) == 8  # one row per run, each linking to its page
    runs = [href for href, a in parsed.links if href.startswith("cells/")]
    assert len(set(runs)) == 8 and all((page / href).is_file() for href in runs)


def test_names_are_escaped_and_the_json_block_cannot_close_its_script(page):
    text = (page / "index.html").read_text(encoding="utf-8")
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert len(_parse(page / "index.html").scripts) == 2  # the tooltips' JSON and the report's script, no other
    block = re.search(r'<script type="application/json" id="tips">(.*?)</script>', text, re.S)[1]
    assert "</" not in block and "\\u003cscript\\u003e" in block
    assert any(EVIL in line for entry in json.loads(block) for line in entry["lines"])  # the data is intact
    assert json.loads(script_json(["</script><!--", "a & b"])) == ["</script><!--", "a & b"]
    assert "<" not in script_json("</script>") and "&" not in script_json("&amp;")
    for cell in (page / "cells").glob("*.html"):
        assert EVIL not in cell.read_text(encoding="utf-8")


def test_plot_points_are_the_cells_and_link_to_their_pages(page):
    view = build_view(page.parent / "suite", page)
    (tradeoff,) = [s.tradeoff for s in view.sections if s.tradeoff is not None]
    assert len(tradeoff.points) == 8
    bar = next(s.table for s in view.sections if s.name == "bar")
    for mean in tradeoff.means:  # the plot's means are the table's (one computed structure)
        row = bar[bar["method"] == mean.group].iloc[0]
        assert float(row["target AF/BF"].split(" ")[0]) == pytest.approx(mean.x, abs=5e-4)
        assert float(row["other datasets AF/BF (worst)"].split(" ")[0]) == pytest.approx(mean.y, abs=5e-4)
    points = [(href, a) for href, a in _parse(page / "index.html").links if a.get("class") == "point"]
    assert sorted(href for href, _ in points) == sorted(f"cells/{page_name(p.run_id)}" for p in tradeoff.points)
    tips = json.loads(re.search(r'id="tips">(.*?)</script>', (page / "index.html").read_text(), re.S)[1])
    first = tips[int(points[0][1]["data-tip"])]
    assert first["title"] in METHODS and any(line.startswith("seed: ") for line in first["lines"])
    assert any(line.startswith("class: ") for line in first["lines"])


def test_cell_pages_show_the_run_its_images_and_its_audit(page):
    view = build_view(page.parent / "suite", page)
    audited = next(c for c in view.cells if c.audit is not None)
    html = (page / "cells" / page_name(audited.run_id)).read_text(encoding="utf-8")
    assert "Before and after forgetting" in html and "recovered" in html and "synthetic forget images" in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 2 and all(not s.startswith(("/", "file:")) for s in sources)
    assert all((page / "cells" / s).resolve().is_file() for s in sources)  # copied beside the page
    assert '<a href="../index.html">' in html


def test_pages_name_no_absolute_path(page):
    for f in [page / "index.html", page / "report.md", *(page / "cells").glob("*.html")]:
        text = f.read_text(encoding="utf-8")
        assert str(page.parent.resolve()) not in text and "/tmp/" not in text, f
    assert "synthetic (syn.safetensors)" in next((page / "cells").glob("*.html")).read_text(encoding="utf-8")
    kept = "; AF/BF 1/2 and x/y, / "
    assert html_report.without_folders("seen (/a/b/c.pt)" + kept) == "seen (c.pt)" + kept


def test_a_report_inside_the_suite_folder_links_the_run_images_where_they_are(tmp_path):
    suite = make_fake_suite(tmp_path / "suite")
    write_report(suite)
    view = build_view(suite)
    audited = next(c for c in view.cells if c.audit is not None)
    html = (suite / "cells" / page_name(audited.run_id)).read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', html)
    run = f"../runs/{audited.run_id}"
    assert f"{run}/synthetic.png" in sources and f"{run}/audit/prompts.png" in sources
    assert not (suite / "audits").exists() and not (suite / "cells" / audited.run_id).exists()  # nothing copied


def test_inline_markdown_escapes_and_keeps_only_relative_links():
    assert inline("see [`a`](audits/x/audit.md) **now**") == (
        'see <a href="audits/x/audit.md"><code>a</code></a> <strong>now</strong>')
    assert inline("<b>x</b> & `<i>`") == "&lt;b&gt;x&lt;/b&gt; &amp; <code>&lt;i&gt;</code>"
    for href in ("javascript:alert(1)", "https://example.com", "//example.com/x", "/etc/passwd"):
        assert "<a" not in inline(f"[x]({href})"), href
    assert page_name("a/b<c>.d") == "a_b_c_.d.html" and page_name(".hidden") == "_.hidden.html"


def test_the_script_and_style_ship_in_the_package():
    from importlib import resources

    folder = resources.files("clipunlearn.benchmark").joinpath("html")
    assert "sortTable" in folder.joinpath("report.js").read_text()
    assert "#tooltip" in folder.joinpath("report.css").read_text()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"html/*.js", "html/*.css"' in pyproject
    assert html_report.e('"<&>') == "&quot;&lt;&amp;&gt;"


# --- in Debian's headless Chromium ----------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
NO_BROWSER = "chromium/chromedriver not installed: apt-get install chromium chromium-driver"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, logging the console and the network (DevTools events)."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(NO_BROWSER)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(NO_BROWSER + " (and pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _open(driver, path: Path) -> None:
    """Load ``path``, dropping the logs of earlier pages."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())


def _problems(driver) -> tuple[list[str], list[str]]:
    """The console errors and warnings since the page was opened, and every URL it requested that is
    not a file:// or data: URL."""
    console = [f"{x['level']}: {x['message']}" for x in driver.get_log("browser")
               if x["level"] in ("SEVERE", "WARNING")]
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    urls += driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return console, [u for u in urls if not u.startswith(("file://", "data:"))]


def _column(driver, table_id: str, name: str) -> list[str]:
    from selenium.webdriver.common.by import By

    headers = [th.text.rstrip(" ↕▲▼") for th in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")]
    i = headers.index(name) + 1
    shown = f"#{table_id} tbody tr:not([hidden]) td:nth-child({i})"
    return [td.text for td in driver.find_elements(By.CSS_SELECTOR, shown)]


@pytest.mark.xdist_group("chromium")
def test_the_page_loads_offline_without_a_console_error(browser, page, tmp_path, capsys):
    _open(browser, page / "index.html")
    assert browser.title == "Benchmark report: fake"
    console, remote = _problems(browser)
    assert console == [] and remote == []
    assert browser.execute_script("return document.querySelectorAll('svg.plot').length") >= 3  # trade-off and plots
    shot = tmp_path / "index.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    with capsys.disabled():
        print(f"\nscreenshot of the HTML report: {shot}")


@pytest.mark.xdist_group("chromium")
def test_a_header_sorts_and_a_filter_hides_rows(browser, page):
    from selenium.webdriver.common.by import By

    _open(browser, page / "index.html")
    rows = browser.find_elements(By.CSS_SELECTOR, "#tbl-t-forgetting tbody tr")
    assert len(rows) == len(pd.read_csv(page / "tables" / "forgetting.csv")) == 4
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "#tbl-t-forgetting thead th")
                  if th.text.startswith("target AF"))
    before = _column(browser, "tbl-t-forgetting", "target AF")
    header.click()
    ascending = _column(browser, "tbl-t-forgetting", "target AF")
    assert ascending == sorted(before, key=lambda t: float(t.split(" ")[0])) and ascending != before
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert _column(browser, "tbl-t-forgetting", "target AF") == ascending[::-1]
    box = browser.find_element(By.CSS_SELECTOR, 'input[data-filter="tbl-t-forgetting"]')
    box.send_keys("amns")
    assert _column(browser, "tbl-t-forgetting", "method") == ["amns", "amns"]
    assert browser.find_element(By.CSS_SELECTOR, '[data-count="tbl-t-forgetting"]').text == "2 of 4 rows"
    box.clear()
    box.send_keys("leopard lip")  # every word must match
    assert _column(browser, "tbl-t-forgetting", "classes") == ["leopard"]
    assert _problems(browser) == ([], [])


@pytest.mark.xdist_group("chromium")
def test_a_plot_point_shows_its_cell_and_links_to_its_page(browser, page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open(browser, page / "index.html")
    point = browser.find_element(By.CSS_SELECTOR, "#plot-bar a.point")
    circle = point.find_element(By.TAG_NAME, "circle")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", circle)
    ActionChains(browser).move_to_element(circle).perform()
    tip = browser.find_element(By.ID, "tooltip")
    assert tip.is_displayed() and "class: " in tip.text and "seed: " in tip.text and "target AF/BF: " in tip.text
    href = point.get_dom_attribute("href")
    ActionChains(browser).click(circle).perform()
    assert href.startswith("cells/") and browser.current_url == (page / href).resolve().as_uri()
    assert browser.title.startswith("Forgetting ") and "Before and after forgetting" in browser.page_source
    assert browser.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert _problems(browser) == ([], [])


@pytest.mark.xdist_group("chromium")
def test_a_class_named_like_a_script_shows_as_text_and_opens_no_alert(browser, page):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    evil = next(c for c in build_view(page.parent / "suite", page).cells if c.results.classes == [EVIL])
    for path in (page / "index.html", page / "cells" / page_name(evil.run_id)):
        _open(browser, path)
        with pytest.raises(TimeoutException):
            WebDriverWait(browser, 0.5).until(expected_conditions.alert_is_present())
        assert EVIL in browser.find_element(By.TAG_NAME, "body").text
        assert _problems(browser) == ([], [])



COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results"


@pytest.mark.xdist_group("chromium")
@pytest.mark.parametrize("name", sorted(p.parent.name for p in COMMITTED.glob("*/index.html")))
def test_each_committed_page_opens_offline_with_every_table_of_its_report(browser, name):
    """The committed results pages (made by ``clipunlearn benchmark report``) load offline without a
    console error, with one HTML table per table of their report.md, row for row."""
    from selenium.webdriver.common.by import By

    folder = COMMITTED / name
    _open(browser, folder / "index.html")
    console, remote = _problems(browser)
    assert console == [] and remote == []
    for csv in sorted((folder / "tables").glob("*.csv")):
        rows = browser.find_elements(By.CSS_SELECTOR, f"#tbl-t-{csv.stem} tbody tr")
        assert len(rows) == len(pd.read_csv(csv)), csv.name


def test_the_audit_wacv_and_cvpr_pages_are_committed_with_their_html():
    """The pages the browser test above opens are there (made by the report command, never by hand)."""
    assert {"audit", "audit-vit", "wacv-mini-rn", "wacv-mini-vit", "cvpr-mini-rn", "cvpr-mini-rn-h",
            "wacv-mini-rn-h"} <= {
        p.parent.name for p in COMMITTED.glob("*/index.html")}


def test_a_rebuilt_report_drops_the_pages_of_runs_it_no_longer_has(tmp_path):
    """A run removed from the suite (a stale cell rerun under a new id): its page, its image copies and
    its audit copies go; the other runs' pages and files a report did not write stay."""
    import shutil

    suite = make_fake_suite(tmp_path / "suite")
    dest = tmp_path / "page"
    write_report(suite, dest)
    audited = next(c for c in build_view(suite, dest).cells if c.audit is not None)
    kept_pages = sorted(p.name for p in (dest / "cells").glob("*.html"))
    assert page_name(audited.run_id) in kept_pages and (dest / "audits" / audited.run_id).is_dir()
    (dest / "cells" / "notes.txt").write_text("mine")
    shutil.rmtree(suite / "runs" / audited.run_id)
    write_report(suite, dest)
    assert sorted(p.name for p in (dest / "cells").glob("*.html")) == [n for n in kept_pages
                                                                       if n != page_name(audited.run_id)]
    assert not (dest / "cells" / audited.run_id).exists() and not (dest / "audits" / audited.run_id).exists()
    assert (dest / "cells" / "notes.txt").read_text() == "mine"


def test_a_report_rebuilt_from_records_keeps_the_images_an_earlier_build_copied(tmp_path):
    """Records hold no image: a page rebuilt from a suite folder whose runs lost their PNGs links the copies
    its earlier build made of the same runs; a run never copied shows no image, and no broken link."""
    suite = make_fake_suite(tmp_path / "suite")
    dest = tmp_path / "page"
    write_report(suite, dest)
    audited = next(c for c in build_view(suite, dest).cells if c.audit is not None)
    before = re.findall(r'<img src="([^"]+)"', (dest / "cells" / page_name(audited.run_id)).read_text("utf-8"))
    assert len(before) == 2
    for png in suite.rglob("*.png"):
        png.unlink()
    write_report(suite, dest)
    after = re.findall(r'<img src="([^"]+)"', (dest / "cells" / page_name(audited.run_id)).read_text("utf-8"))
    assert after == before and all((dest / "cells" / s).resolve().is_file() for s in after)
    fresh = tmp_path / "fresh"
    write_report(suite, fresh)  # no earlier build: nothing to link
    assert "<img" not in (fresh / "cells" / page_name(audited.run_id)).read_text("utf-8")
