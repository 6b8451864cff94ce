"""``index.html`` of a suite's report and one page per run (``cells/<run id>.html``), rendered from the
``View`` that report.md is rendered from (``report.build_view``).

The pages work offline and request nothing: the script and style are read from this package
(``html/report.js``, ``html/report.css``) and inlined, the plots are inline SVG drawn here from the
view's numbers, images are files beside the page, and a Content-Security-Policy allows only the
inlined script and style (by hash). Every name from a dataset, a suite or a run is escaped; the
tooltips' data sits in a JSON block that cannot close its script tag."""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from ..io import save_with, write_text
from .view import Bars, Cell, Lines, Section, Tradeoff, View, format_figure

#: colours of the methods in the plots (Okabe-Ito's eight first, then more; they repeat after twenty)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#999999", "#7F3C8D", "#11A579", "#3969AC", "#F2B701", "#E73F74", "#80BA5A", "#E68310",
           "#008695", "#CF1C90", "#4B4B8F", "#A5AA99")
MISSING = "–"
#: the images a run folder may hold, shown on its page in this order
RUN_IMAGES = (("synthetic.png", "synthetic forget images"), ("retrieval.png", "retrieval before and after"),
              ("selected_tensors.png", "tensors selected in kept steps"))
#: the columns of the runs table of index.html, where the runs measured them
RUN_COLUMNS = ("model", "method", "kind", "dataset", "classes", "seed", "target BF", "target AF", "retain BF",
               "retain AF", "other classes BF", "other classes AF", "Avg. Score", "Score", "audit attacks recovered")


def e(value: Any) -> str:
    """Escape text for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def script_json(data: Any) -> str:
    """JSON to embed in a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes, so no string in
    it can close the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def page_name(run_id: str) -> str:
    """The file name of a run's page: its id with anything but letters, digits and ``._+@=-`` replaced."""
    name = re.sub(r"[^A-Za-z0-9._+@=-]", "_", run_id) or "_"
    return ("_" + name if name.startswith(".") else name) + ".html"


def _asset(name: str) -> str:
    return resources.files("clipunlearn.benchmark").joinpath("html", name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _document(title: str, body: str, script: str = "") -> str:
    """A page with the package's style (and script) inlined, allowed by hash and nothing else."""
    style = _asset("report.css")
    policy = f"default-src 'none'; img-src 'self' data:; style-src {_hash(style)}" + (
        f"; script-src {_hash(script)}" if script else "")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{e(policy)}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<link rel="icon" href="data:,">\n<title>{e(title)}</title>\n<style>{style}</style>\n</head>\n'
            f"<body>\n{body}\n" + (f"<script>{script}</script>\n" if script else "") + "</body>\n</html>\n")


# --- text: the view's markdown lines as HTML --------------------------------------------------------------

_INLINE = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<href>[^)\s]+)\)|`(?P<code>[^`]+)`|\*\*(?P<bold>.+?)\*\*")
_RELATIVE = re.compile(r"[A-Za-z0-9._~#%+@=-][^:]*")  # no scheme, no leading /: a link to the page's files


def inline(text: str) -> str:
    """One markdown line as HTML: ``code``, **bold** and relative [links](...); the rest escaped."""
    out, at = [], 0
    for m in _INLINE.finditer(text):
        out.append(e(text[at:m.start()]))
        if m["code"] is not None:
            out.append(f"<code>{e(m['code'])}</code>")
        elif m["bold"] is not None:
            out.append(f"<strong>{inline(m['bold'])}</strong>")
        elif _RELATIVE.fullmatch(m["href"]):
            out.append(f'<a href="{e(m["href"])}">{inline(m["text"])}</a>')
        else:
            out.append(e(m[0]))
        at = m.end()
    return "".join(out) + e(text[at:])


def blocks(lines: list[str]) -> str:
    """Markdown lines as paragraphs and lists (``- `` items); an empty line ends a paragraph."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + " ".join(inline(x) for x in para) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in items) + "</ul>")
            items.clear()

    for line in (part for text in lines for part in text.split("\n")):
        if line.startswith("- "):
            if para:
                flush()
            items.append(line[2:])
        elif not line.strip():
            flush()
        else:
            if items:
                flush()
            para.append(line)
    flush()
    return "\n".join(out)


# --- tables ---------------------------------------------------------------------------------------------


def _text(value: Any, column: str = "") -> str:
    """A value as a page shows it: a figure formatted as in the tables (``format_figure``), ``–`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return format_figure(column, value)
    return str(value)


def table(frame: pd.DataFrame, table_id: str, label: str, links: dict[str, str] | None = None) -> str:
    """A sortable, filterable table (report.js): one row per row of ``frame``, its text as formatted;
    ``links`` maps a value of the first column to the page it links to."""
    head = "".join(f'<th scope="col" tabindex="0" aria-sort="none">{e(c)}</th>' for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        texts = [_text(v, c) for v, c in zip(values, frame.columns)]
        cells = [f'<td class="long">{e(t)}</td>' if len(t) > 48 else f"<td>{e(t)}</td>" for t in texts]
        href = (links or {}).get(str(values[0]))
        if href is not None:
            cells[0] = f'<td><a href="{e(href)}">{e(texts[0])}</a></td>'
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="tools"><input type="search" placeholder="filter rows" aria-label="filter {e(label)}" '
            f'data-filter="{e(table_id)}"> <span class="count" data-count="{e(table_id)}">{len(rows)} rows</span>'
            "</div>\n"
            f'<div class="scroll"><table id="{e(table_id)}" class="sortable">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")


# --- plots: inline SVG from the view's numbers ----------------------------------------------------------


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values between ``lo`` and ``hi`` (about ``n``)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


class Tips:
    """The tooltips of a page: each plot mark names its entry (``data-tip``), report.js shows it."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def add(self, title: str, lines: list[str]) -> str:
        self.entries.append({"title": title, "lines": lines})
        return f'data-tip="{len(self.entries) - 1}" tabindex="0" aria-label="{e(title + ": " + "; ".join(lines))}"'


class Axes:
    """A plot area: data coordinates to SVG pixels, with its frame, ticks and labels."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], width: float = 640,
                 height: float = 400, left: float = 60, bottom: float = 48, top: float = 16, right: float = 16):
        self.x_range, self.y_range, self.width, self.height = x_range, y_range, width, height
        self.left, self.bottom, self.top, self.right = left, bottom, top, right

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        return round(self.left + (value - lo) / ((hi - lo) or 1) * (self.width - self.left - self.right), 2)

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        span = self.height - self.bottom - self.top
        return round(self.height - self.bottom - (value - lo) / ((hi - lo) or 1) * span, 2)

    def frame(self, x_label: str, y_label: str, x_ticks: list[tuple[float, str]] | None = None) -> list[str]:
        x0, x1, y0, y1 = self.left, self.width - self.right, self.height - self.bottom, self.top
        out = [f'<rect class="area" x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}"/>']
        for v in _ticks(*self.y_range):
            out.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{self.y(v)}" y2="{self.y(v)}"/>'
                       f'<text class="tick" x="{x0 - 6}" y="{self.y(v) + 4}" text-anchor="end">{v:g}</text>')
        for v, label in (x_ticks if x_ticks is not None else [(t, f"{t:g}") for t in _ticks(*self.x_range)]):
            out.append(f'<line class="grid" x1="{self.x(v)}" x2="{self.x(v)}" y1="{y0}" y2="{y1}"/>'
                       f'<text class="tick" x="{self.x(v)}" y="{y0 + 16}" text-anchor="middle">{e(label)}</text>')
        out.append(f'<text class="label" x="{(x0 + x1) / 2}" y="{self.height - 8}" text-anchor="middle">'
                   f"{e(x_label)}</text>")
        out.append(f'<text class="label" transform="translate(14 {(y0 + y1) / 2}) rotate(-90)" '
                   f'text-anchor="middle">{e(y_label)}</text>')
        return out


def _svg(width: float, height: float, label: str, parts: list[str]) -> str:
    return (f'<svg class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{e(label)}" xmlns="http://www.w3.org/2000/svg">\n' + "\n".join(parts) + "\n</svg>")


def _legend(entries: list[tuple[str, str]]) -> str:
    swatch = '<svg width="12" height="12" aria-hidden="true"><circle cx="6" cy="6" r="5" fill="{}" stroke="#333"/>' \
             "</svg>"
    items = "".join(f"<li>{swatch.format(e(colour))} {e(name)}</li>" for name, colour in entries)
    return f'<ul class="legend">{items}</ul>'


def _colours(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(names))}


def tradeoff_svg(t: Tradeoff, tips: Tips, cell_href: dict[str, str]) -> str:
    """The trade-off plot: each cell a point (hover: what it is; click: its page), each row's mean a
    ringed point, the bar's region shaded."""
    ax = Axes(t.x_range, t.y_range)
    parts = ax.frame(t.x_label, t.y_label)
    if t.region is not None:  # target at most region[0], other datasets at least region[1]
        right, low = min(t.region[0], t.x_range[1]), min(max(t.region[1], t.y_range[0]), t.y_range[1])
        parts.append(f'<rect class="region" x="{ax.x(t.x_range[0])}" y="{ax.y(t.y_range[1])}" '
                     f'width="{round(ax.x(right) - ax.x(t.x_range[0]), 2)}" '
                     f'height="{round(ax.y(low) - ax.y(t.y_range[1]), 2)}"/>')
    colours = _colours([p.method for p in t.points])
    for p in t.points:
        tip = tips.add(p.method, [f"class: {p.classes}", f"dataset: {p.dataset}", f"seed: {p.seed}",
                                  f"{t.x_column}: {p.x:.3f}", f"{t.y_column}: {p.y:.3f}", f"row: {p.group}",
                                  f"run: {p.run_id} (click: its page)"])
        parts.append(f'<a class="point" href="{e(cell_href.get(p.run_id, "#"))}" {tip}>'
                     f'<circle cx="{ax.x(p.x)}" cy="{ax.y(p.y)}" r="5" fill="{colours[p.method]}"/></a>')
    for m in t.means:
        tip = tips.add(m.group, [f"mean of {m.runs} runs", f"{t.x_column}: {m.x:.3f}", f"{t.y_column}: {m.y:.3f}"])
        parts.append(f'<g class="mean" {tip}><circle cx="{ax.x(m.x)}" cy="{ax.y(m.y)}" r="7"/>'
                     f'<text x="{ax.x(m.x) + 9}" y="{ax.y(m.y) - 6}">{e(m.group)}</text></g>')
    legend = _legend([*colours.items(), ("row mean (ringed)", "#ffffff")])
    return (f'<figure class="tradeoff" id="plot-{_slug(t.name)}">{_svg(ax.width, ax.height, t.title, parts)}\n{legend}'
            f"<figcaption>{e(t.title)}: each point a cell (hover: what it is; click: its page); rings: the rows' "
            f"means; shaded: the bar's region.</figcaption></figure>")


def bars_svg(b: Bars, tips: Tips) -> str:
    """Grouped bars: per method, one bar per column (hover: the figure and the number of runs)."""
    values = [v for g in b.groups for v in g.values if v is not None] or [0.0]
    low, high = min(0.0, *values), max(0.0, *values) * 1.08
    ax = Axes((0, max(1, len(b.groups))), (low, high if high > low else low + 1.0),
              width=max(420, 90 + (16 * len(b.columns) + 18) * len(b.groups)), height=360, bottom=110)
    parts = ax.frame("", b.y_label, x_ticks=[])
    colours = _colours(list(b.columns))
    several_models = len({g.model for g in b.groups}) > 1
    for i, g in enumerate(b.groups):
        left = ax.x(i) + (ax.x(1) - ax.x(0) - 16 * len(b.columns)) / 2
        for j, (column, v) in enumerate(zip(b.columns, g.values)):
            if v is None:
                continue
            top, base = ax.y(max(v, 0)), ax.y(min(v, 0))
            tip = tips.add(f"{g.method} ({g.model})", [f"{column}: {v:.3f}", f"mean of {g.runs} runs"])
            parts.append(f'<rect class="bar" x="{round(left + 16 * j, 2)}" y="{top}" width="14" '
                         f'height="{round(base - top, 2)}" fill="{colours[column]}" {tip}/>')
        x = ax.x(i + 0.5)
        parts.append(f'<text class="tick" transform="translate({x} {ax.height - ax.bottom + 12}) rotate(-35)" '
                     f'text-anchor="end">{e(f"{g.method} ({g.model})" if several_models else g.method)}</text>')
    return (f'<figure class="bars">{_svg(ax.width, ax.height, b.title, parts)}\n{_legend(list(colours.items()))}'
            f"<figcaption>{e(b.title)} (means per method; hover a bar for its figure)</figcaption></figure>")


def lines_svg(lines: Lines, tips: Tips) -> str:
    """One line plot per panel: a line per method over k, the mean before forgetting dashed, and the
    panel's bands shaded behind them (hover: the band's range)."""
    out = []
    for panel in lines.panels:
        values = [v for v in (*(v for s in panel.series for v in s.values), *panel.before,
                              *(v for b in panel.bands for v in b.high)) if v is not None]
        ax = Axes((min(panel.ks), max(panel.ks)) if len(panel.ks) > 1 else (panel.ks[0] - 1, panel.ks[0] + 1),
                  (0.0, max(1.0, *values) if values else 1.0), width=480, height=320)
        parts = ax.frame(panel.x_label, panel.y_label, x_ticks=[(k, str(k)) for k in panel.ks])
        shades = dict(zip([b.label for b in panel.bands], ("#9e9e9e", "#2ca02c", "#ff7f0e")))
        for band in panel.bands:
            outline = [(ax.x(k), ax.y(v)) for k, v in zip(panel.ks, band.high)]
            outline += [(ax.x(k), ax.y(v)) for k, v in reversed(list(zip(panel.ks, band.low)))]
            tip = tips.add(band.label, [panel.title, *(f"step {k}: {lo:.3f} to {hi:.3f}"
                                                      for k, lo, hi in zip(panel.ks, band.low, band.high))])
            parts.append(f'<polygon class="band" points="{" ".join(f"{x},{y}" for x, y in outline)}" '
                         f'fill="{shades[band.label]}" fill-opacity="0.25" stroke="{shades[band.label]}" stroke-dasharray="2 3" '
                         f'{tip}/>')
        colours = _colours([s.label for s in panel.series])
        named = [(s.label, s.values, colours[s.label], "") for s in panel.series]
        dashed = [("before", panel.before, "#000000", ' stroke-dasharray="5 4"')] if panel.before else []
        dashed_key = [("before (dashed)", "#000000")] if panel.before else []
        for label, vals, colour, dash in [*named, *dashed]:
            xy = [(ax.x(k), ax.y(v)) for k, v in zip(panel.ks, vals) if v is not None]
            points = " ".join(f"{x},{y}" for x, y in xy)
            parts.append(f'<polyline class="line" points="{points}" stroke="{colour}"{dash}/>')
            for k, v in zip(panel.ks, vals):
                if v is not None:
                    tip = tips.add(label, [f"{panel.title}", f"{panel.x_label} {k}: {v:.3f}"])
                    parts.append(f'<circle class="dot" cx="{ax.x(k)}" cy="{ax.y(v)}" r="4" fill="{colour}" {tip}/>')
        out.append(f'<figure class="lines">{_svg(ax.width, ax.height, panel.title, parts)}\n'
                   f'{_legend([*colours.items(), *dashed_key, *((f"{b} (band)", c) for b, c in shades.items())])}'
                   f"<figcaption>{e(panel.title)}</figcaption></figure>")
    return "\n".join(out)


# --- index.html -----------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    """A table's name as a part of an element id (letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _anchor(name: str) -> str:
    return "t-" + _slug(name)


def _section(s: Section, tips: Tips, cell_href: dict[str, str]) -> str:
    anchor = _anchor(s.name)
    heading = s.name + (f": {s.title}" if s.title != s.name else "")
    plot = tradeoff_svg(s.tradeoff, tips, cell_href) if s.tradeoff is not None else ""
    return (f'<section id="{e(anchor)}">\n<h2>{e(heading)}</h2>\n{blocks(s.caption)}\n'
            f"{table(s.table, 'tbl-' + anchor, s.name)}\n{blocks(s.notes)}\n{plot}\n</section>")


def runs_table(view: View) -> pd.DataFrame:
    """The runs table of index.html: one row per run, its id (linking to its page) and main figures."""
    df = view.runs
    shown = [c for c in RUN_COLUMNS if c in df.columns and df[c].notna().any()]
    return df[["run_id", *shown]].rename(columns={"run_id": "run"})


def render_index(view: View) -> str:
    tips = Tips()
    cell_href = {c.run_id: "cells/" + quote(page_name(c.run_id)) for c in view.cells}
    nav = "".join(f'<li><a href="#{e(_anchor(s.name))}">{e(s.name)}</a></li>' for s in view.sections)
    sections = [_section(s, tips, cell_href) for s in view.sections]
    if view.waiting:
        sections.append('<section id="waiting"><h2>Not run yet</h2>' + blocks([f"- {w}" for w in view.waiting])
                        + "</section>")
    plots = [bars_svg(p, tips) if isinstance(p, Bars) else lines_svg(p, tips) for p in view.plots]
    sections.append('<section id="plots"><h2>Plots</h2>\n' + "\n".join(plots) + "\n</section>")
    sections.append('<section id="runs"><h2>Runs</h2>\n<p>One row per finished run; its id links to its page '
                    "(figures before and after, images, audit).</p>\n"
                    + table(runs_table(view), "tbl-runs", "runs", cell_href) + "\n</section>")
    body = (f"<header><h1>{e(view.title)}</h1>\n{blocks(view.intro)}\n<nav><ul>{nav}"
            '<li><a href="#plots">Plots</a></li><li><a href="#runs">Runs</a></li></ul></nav></header>\n<main>\n'
            + "\n".join(sections) + "\n</main>\n"
            '<div id="tooltip" role="tooltip" hidden></div>\n'
            f'<script type="application/json" id="tips">{script_json(tips.entries)}</script>')
    return _document(view.title, body, _asset("report.js"))


# --- one page per run -----------------------------------------------------------------------------------


def _image(src: Path, view: View, copied_as: Path) -> str | None:
    """The ``src`` of an image of a run on its page (``cells/``): the file itself where the report is
    written into the suite's folder, else its copy ``copied_as`` under the report (copied here). A run
    folder rebuilt from a page's records holds no image: the copy an earlier build of the page made of
    the same run (same run id) is linked then. None where there is neither."""
    elsewhere = view.dest.resolve() != view.root.resolve()
    if src.is_file():
        target = src
        if elsewhere:
            save_with(copied_as, lambda tmp: shutil.copyfile(src, tmp))
            target = copied_as
    elif elsewhere and copied_as.is_file():
        target = copied_as
    else:
        return None
    return quote(os.path.relpath(target, view.dest / "cells").replace(os.sep, "/"))


def _figures(images: list[tuple[str | None, str]]) -> list[str]:
    """``<figure>`` elements of the (src, caption) pairs that have a src."""
    return [f'<figure><img src="{e(src)}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'
            for src, caption in images if src is not None]


def _before_after(row: dict[str, Any], cell: Cell) -> str:
    """The run's figures from its row of the runs frame: each measured before/after pair (the target,
    what is kept, the run's other datasets first), then the rest."""
    first = ["target", "other classes", "retain", *cell.results.datasets]
    pairs = sorted((c[:-3] for c in row if c.endswith(" BF") and f"{c[:-3]} AF" in row),
                   key=lambda p: first.index(p) if p in first else len(first))
    used = {f"{p} {w}" for p in pairs for w in ("BF", "AF")} | {"run_id", "model", "method", "kind", "dataset",
                                                               "classes", "n_classes", "seed"}
    body = "".join(f"<tr><th scope=\"row\">{e(p)}</th><td>{e(_text(row[f'{p} BF'], p))}</td>"
                   f"<td>{e(_text(row[f'{p} AF'], p))}</td></tr>" for p in pairs
                   if not (pd.isna(row[f"{p} BF"]) and pd.isna(row[f"{p} AF"])))
    rest = "".join(f'<tr><th scope="row">{e(k)}</th><td>{e(_text(v, k))}</td></tr>' for k, v in row.items()
                   if k not in used and not (v is None or (isinstance(v, float) and math.isnan(v))))
    return ('<h2>Before and after forgetting</h2>\n<table class="figures"><thead><tr><th scope="col">measured</th>'
            f'<th scope="col">before</th><th scope="col">after</th></tr></thead><tbody>{body}</tbody></table>\n'
            f'<h2>Other figures</h2>\n<table class="figures"><tbody>{rest}</tbody></table>')


_FOLDER = re.compile(r"(?<![\w.~-])/(?:[^\s/()\"',;]+/)*([^\s/()\"',;]+)")


def without_folders(text: str) -> str:
    """``text`` with each absolute path cut to its last part (a page names no folder of the machine)."""
    return _FOLDER.sub(r"\1", text)


def _facts(cell: Cell, row: dict[str, Any]) -> str:
    r = cell.results
    seen = "; ".join(f"{k} {v.get('n', '?')} images ({v.get('source', '?')})" for k, v in r.data_seen.items())
    facts = [("run", cell.run_id), ("model", row.get("model", r.model.get("arch"))), ("method", row.get("method")),
             ("zero-shot", r.raw.get("zero_shot")), ("preset", r.preset), ("ablation", r.ablation),
             ("dataset", r.dataset), ("classes", ", ".join(r.classes)),
             ("seed", (r.raw.get("settings") or {}).get("seed")),
             ("stopped", f"after {r.epochs} epochs: {r.stopped_because}"),
             ("data the method saw", seen or "none (names only)"),
             ("seconds", ", ".join(f"{k} {v:.1f}" for k, v in r.seconds.items()))]
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(without_folders(str(v)))}</dd>" for k, v in facts
                            if v not in (None, "")) + "</dl>"


def _audit(cell: Cell, view: View) -> str:
    if cell.audit is None or cell.audit_folder is None:
        return ""
    rows = "".join(f"<tr><td>{e(v.get('attack', ''))}</td><td>{e(v.get('verdict', ''))}</td>"
                   f"<td>{e(v.get('figure', ''))}</td><td>{e(v.get('threshold', ''))}</td></tr>"
                   for v in cell.audit.get("verdict", []))
    copies = view.dest / "audits" / cell.run_id
    plots = _figures([(_image(cell.audit_folder / name, view, copies / name), name)
                      for name in cell.audit.get("plots", []) if Path(name).name == name])  # a file of the audit folder
    return ('<h2>Audit</h2>\n<p>Does the class come back? Thresholds and attacks: docs/audit.md.</p>\n'
            '<table class="figures"><thead><tr><th scope="col">attack</th><th scope="col">verdict</th>'
            f'<th scope="col">figure</th><th scope="col">threshold</th></tr></thead><tbody>{rows}</tbody></table>\n'
            + "\n".join(plots))


def render_cell(cell: Cell, row: dict[str, Any], view: View) -> str:
    """A run's page: what ran, its figures before and after, its images and its audit."""
    r = cell.results
    title = f"Forgetting {', '.join(r.classes)} ({r.dataset}) in {r.model.get('arch', '?')}"
    copies = view.dest / "cells" / page_name(cell.run_id).removesuffix(".html")
    images = _figures([(_image(cell.folder / name, view, copies / name), caption) for name, caption in RUN_IMAGES])
    body = (f'<header><p><a href="../index.html">← the report</a></p><h1>{e(title)}</h1>\n'
            f"{_facts(cell, row)}</header>\n"
            f"<main>\n{_before_after(row, cell)}\n" + ("<h2>Images</h2>\n" + "\n".join(images) if images else "")
            + f"\n{_audit(cell, view)}\n</main>")
    return _document(title, body)


def write_html(view: View) -> Path:
    """Write ``index.html`` and ``cells/<run id>.html`` into the report's folder; returns index.html."""
    rows = {str(row["run_id"]): row for row in view.runs.to_dict("records")}
    for cell in view.cells:
        write_text(view.dest / "cells" / page_name(cell.run_id), render_cell(cell, rows[cell.run_id], view))
    remove_orphans(view)
    out = view.dest / "index.html"
    write_text(out, render_index(view))
    return out


def remove_orphans(view: View) -> list[Path]:
    """Remove the pages (``cells/<run id>.html``), the image copies beside them and the audit copies
    (``audits/<run id>/``) that an earlier report wrote for runs this one no longer has (a stale run
    rerun under a new id, a run removed from the suite); returns what was removed. Only what a report
    writes is touched: other files in those folders stay."""
    removed: list[Path] = []
    pages = {page_name(c.run_id) for c in view.cells}
    cells = view.dest / "cells"
    if cells.is_dir():
        for page in sorted(cells.glob("*.html")):
            if page.name not in pages:
                page.unlink()
                removed.append(page)
                copies = cells / page.name.removesuffix(".html")
                if copies.is_dir():
                    shutil.rmtree(copies)
                    removed.append(copies)
    audits = view.dest / "audits"
    if audits.is_dir() and view.dest.resolve() != view.root.resolve():
        audited = {c.run_id for c in view.cells if c.audit_folder is not None}
        for folder in sorted(p for p in audits.iterdir() if p.is_dir() and p.name not in audited):
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


__all__ = ["blocks", "e", "inline", "page_name", "remove_orphans", "render_cell", "render_index", "script_json", "table",
           "without_folders", "write_html"]
