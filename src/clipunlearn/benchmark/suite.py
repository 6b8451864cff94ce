"""Benchmark suites as data: a TOML file of tables, each a set of cells (models × methods × forget
targets × seeds, optionally a setting varied one at a time) and the way to show them. Shipped suites
live in ``benchmark/suites/``; a user copies one and edits it for their own model.

    name = "quick"
    models = ["mini-rn"]
    seeds = [0]
    other_datasets = ["cifar10"]      # optional: default, the paper's other datasets
    n_per_class = 16                  # synthetic images per class
    max_steps = 300                   # generation steps per image (optional)
    max_epochs = 4                    # cap on every method's epochs (optional)
    precision = "auto"                # optional: auto, fp32, tf32 or bf16 (clipunlearn.precision)

    [classes]                         # optional: how classes are chosen for `datasets = [...]`
    min_top1 = 0.3                    # a paper class is used when the model knows it this well
    per_dataset = 3                   # classes forgotten one at a time per dataset
    paper = { caltech101 = ["euphonium", "minaret", "platypus"] }

    [[tables]]
    name = "table1"
    title = "Forgetting per dataset"
    show = "forgetting"               # forgetting, retrieval, errors, verification, template, bar, subgroup
    group_by = ["dataset", "method"]  # rows; the model is always the first key
    methods = [{ method = "lip" }, { method = "amns", preset = "default", options = { lr = 1e-4 } }]
    datasets = ["caltech101"]         # classes chosen by [classes] ...
    targets = [{ dataset = "cifar10", classes = ["cat"] }]   # ... and/or named
    # subgroups = ["in-domain-flower"]  # or: shipped subgroup settings (CVPR'25), in a table of their own
    together = [2, 3]                 # optional: runs forgetting this many chosen classes at once
    vary = { lr = [1e-4, 1e-3] }      # optional: each value alone, over the preset (n_per_class too)

    [[tables]]
    name = "table4"
    cells = "table1"                  # the cells of another table, shown another way
    group_by = ["dataset", "classes", "method"]

    [[tables]]
    name = "audit"
    cells = "table1"
    show = "audit"                    # each cell audited (clipunlearn audit) after its run

    [audit]                           # optional: how cells of show = "audit" tables are audited
    attacks = ["prompts", "probe"]    # default: every attack (oracle where the suite has one)
    seed = 0
    relearning = "held-out"           # the relearning grid: held-out (default), tuning or full (docs/audit.md)

    [[oracles]]                       # optional: zoo models trained without classes (benchmark/oracles.py)
    model = "mini-rn"
    exclude = ["caltech101:minaret"]

The older short form (top-level ``methods`` and ``targets``) is one table shown three ways. Every
name is checked before any cell runs: a bad one fails with the file, the field and the closest
known name.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ClipUnlearnError, suggest
from ..precision import PRECISIONS
from ..runs.spec import RunSpec
from .classes import ChosenClass, ClassRule
from .fields import check_keys, fail, table_entries
from .oracles import OracleSpec, check_oracles, parse_oracles

SUITE_KEYS = {"name", "description", "models", "seeds", "other_datasets", "n_per_class", "max_steps", "max_epochs",
              "retrieval", "template_change", "methods", "targets", "classes", "tables", "audit", "oracles",
              "precision"}
AUDIT_KEYS = {"attacks", "seed", "relearning"}
METHOD_KEYS = {"method", "preset", "ablation", "options"}
TARGET_KEYS = {"dataset", "classes"}
CLASS_KEYS = {"paper", "min_top1", "per_dataset"}
TABLE_KEYS = {"name", "title", "show", "group_by", "methods", "targets", "datasets", "subgroups", "together", "vary",
              "cells",
              "seeds", "bar", "goal", "claims"}
#: a subgroup table's goal (``show = "subgroup"``): this method's ratio Score at least ``score`` and
#: above every other method's, per setting; ``preset`` (optional) names which of the method's rows
GOAL_KEYS = {"method", "score"}
GOAL_OPTIONAL = {"preset"}
#: a forgetting-depth table's goal (``show = "depth"``): this method's mean R over the held-out attacks
#: at most ``r``, no cell recovered by prompts, images or membership, every other dataset keeping at
#: least ``kept`` of its accuracy, an Avg. Score no worse than the best other method's and an R below
#: every other method's (docs/audit.md)
DEPTH_GOAL_KEYS = {"method", "r", "kept"}
#: a claim a bar table checks (``show = "bar"``): ``method``'s mean of the bar's ``column`` (a BAR_KEYS
#: name) is higher (``higher = true``) or lower than each method of ``than``'s, over the cells they all
#: finished; ``says`` is the claim in words (a paper's, say)
CLAIM_KEYS = {"says", "method", "column", "than", "higher"}
#: what a table shows of each cell (columns); see ``benchmark.report``
SHOWS = ("forgetting", "retrieval", "errors", "verification", "template", "bar", "subgroup", "audit", "depth")
#: a quality bar's thresholds (``show = "bar"``): the most the target may keep and the least the rest
#: must keep, as after/before ratios of the row's means, and the highest Avg. Score
BAR_KEYS = {"target": 0.2, "other_classes": 0.9, "other_datasets": 0.95, "avg_score": 0.10}
#: what a table's rows may be grouped by (the model always comes first)
GROUP_KEYS = ("dataset", "method", "classes", "n_classes", "setting", "seed")
#: settings a table may vary that are fields of the cell, not of the method's config
SPEC_SETTINGS = ("n_per_class",)


@dataclass(frozen=True)
class MethodEntry:
    method: str
    preset: str = "default"
    ablation: str | None = None
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Target:
    dataset: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    """``method``'s mean ``column`` is higher (or lower) than each of ``than``'s (see CLAIM_KEYS)."""

    says: str
    method: str
    column: str
    than: tuple[str, ...]
    higher: bool


@dataclass(frozen=True)
class TableSpec:
    """One table of a suite: which cells, and how they are shown."""

    name: str
    title: str = ""
    show: str = "forgetting"
    group_by: tuple[str, ...] = ("dataset", "method")
    methods: tuple[MethodEntry, ...] = ()
    targets: tuple[Target, ...] = ()
    datasets: tuple[str, ...] = ()  # one run per class chosen by the suite's class rule ...
    together: tuple[int, ...] = ()  # ... or one run per count, forgetting that many chosen classes at once
    subgroups: tuple[str, ...] = ()  # shipped subgroup settings (CVPR'25): one run each
    vary: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # each value alone over the preset
    cells: str | None = None  # show the cells of this other table
    seeds: tuple[int, ...] | None = None
    bar: tuple[tuple[str, float], ...] = ()  # show = "bar": thresholds over BAR_KEYS' defaults
    goal: tuple[tuple[str, Any], ...] = ()  # show = "subgroup": GOAL_KEYS; show = "depth": DEPTH_GOAL_KEYS
    claims: tuple[Claim, ...] = ()  # show = "bar": CLAIM_KEYS


@dataclass(frozen=True)
class Cell:
    """A run of a table, with the setting it varies (``""`` for the preset itself)."""

    spec: RunSpec
    setting: str = ""


@dataclass
class Suite:
    name: str
    source: str
    models: list[str]
    tables: list[TableSpec]
    seeds: list[int] = field(default_factory=lambda: [0])
    other_datasets: list[str] | None = None
    n_per_class: int = 64
    max_steps: int | None = None
    max_epochs: int | None = None
    retrieval: bool = True
    template_change: bool = True
    description: str = ""
    classes: ClassRule = field(default_factory=ClassRule)
    audit_attacks: tuple[str, ...] | None = None  # None: every attack (oracle where the cell has one)
    audit_seed: int = 0
    audit_relearning: str = "held-out"  # the relearning grid of the audits (held-out, tuning, full, text)
    oracles: tuple[OracleSpec, ...] = ()
    precision: str = "auto"  # every cell's (and its audit's); part of a cell's run id when not auto

    def audited(self, models: list[str] | None = None,
                chosen: Callable[[str], dict[str, list[ChosenClass]]] | None = None) -> set[str]:
        """Run ids of the cells that a ``show = "audit"`` table shows: they are audited after their run."""
        ids: set[str] = set()
        for model in models or self.models:
            picks = chosen(model) if chosen and self.rule_datasets() else None
            for table in self.tables:
                if table.show == "audit":
                    ids |= {c.spec.resolved().run_id for c in self.table_cells(table, model, picks)}
        return ids

    def oracle_for(self, spec: RunSpec) -> OracleSpec | None:
        """The suite's oracle for a cell: its model without exactly its classes."""
        return next((o for o in self.oracles if o.matches(spec.model, spec.dataset, spec.classes)), None)

    def table(self, name: str) -> TableSpec:
        return next(t for t in self.tables if t.name == name)

    def rule_datasets(self) -> list[str]:
        """Datasets whose classes the class rule chooses (per model)."""
        return sorted({d for t in self.tables for d in t.datasets})

    def table_cells(self, table: TableSpec, model: str,
                    chosen: dict[str, list[ChosenClass]] | None = None) -> list[Cell]:
        """The cells of ``table`` on ``model``; ``chosen``: the class rule's choice per dataset."""
        if table.cells:
            return self.table_cells(self.table(table.cells), model, chosen)
        targets = list(table.targets)
        for d in table.datasets:
            names = [c.name for c in (chosen or {}).get(d, [])]
            if table.together:
                targets += [Target(d, tuple(names[:k])) for k in table.together if len(names) >= k]
            else:
                targets += [Target(d, (c,)) for c in names[: self.classes.per_dataset]]
        runs: list[tuple[Target, str | None]] = [(t, None) for t in targets]
        if table.subgroups:
            from ..data.subgroups import get_setting

            runs += [(Target(name, tuple(g.name for g in get_setting(name).forget)), name) for name in table.subgroups]
        variants: list[tuple[str, dict[str, Any]]] = [("", {})]
        for key, values in table.vary:
            variants += [(f"{key} = {_show(v)}", {key: v}) for v in values]
        out = []
        for m in table.methods:
            for t, subgroup in runs:
                for setting, change in variants:
                    for seed in table.seeds or self.seeds:
                        spec = RunSpec(
                            model=model, method=m.method, dataset=t.dataset, classes=t.classes, preset=m.preset,
                            ablation=m.ablation, options=m.options, seed=seed,
                            other_datasets=None if self.other_datasets is None else tuple(self.other_datasets),
                            n_per_class=self.n_per_class, max_epochs=self.max_epochs, max_steps=self.max_steps,
                            retrieval=self.retrieval, template_change=self.template_change and subgroup is None,
                            subgroup=subgroup, precision=self.precision)
                        for key, value in change.items():
                            if key in SPEC_SETTINGS:
                                spec = replace(spec, **{key: value})
                            else:
                                spec = replace(spec, options=tuple(sorted({**dict(spec.options), key: value}.items())))
                        out.append(Cell(spec, setting))
        return out

    def cells(self, models: list[str] | None = None,
              chosen: Callable[[str], dict[str, list[ChosenClass]]] | None = None) -> list[RunSpec]:
        """Every distinct cell of every table (a cell shared by tables runs once), seed by seed: all
        tables with the first seed, then with the next, so that a suite stopped early has every table
        with fewer seeds rather than the first tables alone; within a seed, in table order."""
        seen: dict[str, RunSpec] = {}
        for model in models or self.models:
            picks = chosen(model) if chosen and self.rule_datasets() else None
            for table in self.tables:
                for cell in self.table_cells(table, model, picks):
                    seen.setdefault(cell.spec.run_id, cell.spec)
        order = {seed: i for i, seed in enumerate(dict.fromkeys(
            [*self.seeds, *(s for t in self.tables for s in (t.seeds or ()))]))}
        return sorted(seen.values(), key=lambda spec: order[spec.seed])  # stable: table order within a seed


def only_tables(suite: Suite, names: list[str]) -> Suite:
    """The suite with only the named tables (and the tables whose cells they show) left to run."""
    known = [t.name for t in suite.tables]
    for name in names:
        if name not in known:
            raise fail(f"{suite.source}: --tables", f"no table named {name!r} (tables: {', '.join(known)})", name,
                       known)
    keep = set(names)
    while True:
        more = {t.cells for t in suite.tables if t.name in keep and t.cells and t.cells not in keep}
        if not more:
            break
        keep |= more
    return replace(suite, tables=[t for t in suite.tables if t.name in keep])


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _frozen(value: Any) -> Any:
    """Lists as tuples, so that options stay hashable parts of a cell."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def shipped_suites() -> list[str]:
    folder = resources.files("clipunlearn.benchmark") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _methods(where: str, entries: Any) -> tuple[MethodEntry, ...]:
    out = []
    for w, m in table_entries(where, entries, METHOD_KEYS, '{ method = "lip" }'):
        if "method" not in m:
            raise fail(w, "has no 'method'")
        out.append(MethodEntry(m["method"], m.get("preset", "default"), m.get("ablation"),
                               tuple(sorted((k, _frozen(v)) for k, v in (m.get("options") or {}).items()))))
    return tuple(out)


def _targets(where: str, entries: Any) -> tuple[Target, ...]:
    out = []
    for w, t in table_entries(where, entries, TARGET_KEYS, '{ dataset = "caltech101", classes = ["minaret"] }'):
        if "dataset" not in t or not t.get("classes"):
            raise fail(w, "needs 'dataset' and a non-empty 'classes' list")
        out.append(Target(t["dataset"], tuple(t["classes"])))
    return tuple(out)


def _check_cells(where: str, t: dict[str, Any], names: list[str]) -> None:
    """A table takes the cells of an earlier table (``cells``) or lists its own: methods, and targets,
    datasets or subgroups (never subgroups with class targets)."""
    cells = t.get("cells")
    if cells is not None:
        if cells not in names:
            raise fail(f"{where}: cells", f"no earlier table named {cells!r}", cells, names)
        if any(k in t for k in ("methods", "targets", "datasets", "subgroups", "together", "vary", "seeds")):
            raise fail(where, "takes the cells of another table ('cells'), so it cannot list its own; drop one")
        return
    if not t.get("methods"):
        raise fail(where, "field 'methods' is missing or empty")
    if not t.get("targets") and not t.get("datasets") and not t.get("subgroups"):
        raise fail(where, "needs 'targets', 'datasets' (classes chosen by the suite's [classes] rule) or "
                          "'subgroups' (shipped subgroup settings)")
    if t.get("subgroups") and (t.get("targets") or t.get("datasets")):
        raise fail(where, "mixes subgroup settings with class targets; give them tables of their own")


def _goal(where: str, goal: dict[str, Any], show: str) -> dict[str, Any]:
    """A table's goal, checked: a ratio Score to beat (show = "subgroup") or an audit depth (show = "depth")."""
    if not goal:
        return goal
    if show not in ("subgroup", "depth"):
        raise fail(f"{where}: goal", 'a goal is for show = "subgroup" (a ratio Score) or "depth" (the audit); '
                                     "set it, or drop goal")
    keys, example = ((GOAL_KEYS, '{ method = "ga", score = 85 }') if show == "subgroup"
                     else (DEPTH_GOAL_KEYS, '{ method = "uproot", r = 0.3, kept = 0.95 }'))
    optional = GOAL_OPTIONAL if show == "subgroup" else set()
    check_keys(f"{where}: goal", goal, keys | optional)
    if set(goal) - optional != keys:
        raise fail(f"{where}: goal", f"needs {', '.join(sorted(keys))}, e.g. {example}")
    return goal


def _table(where: str, t: dict[str, Any], names: list[str]) -> TableSpec:
    check_keys(where, t, TABLE_KEYS)
    if not t.get("name"):
        raise fail(where, "has no 'name'")
    show = t.get("show", "forgetting")
    if show not in SHOWS:
        raise fail(f"{where}: show", f"unknown view {show!r} (known: {', '.join(SHOWS)})", show, list(SHOWS))
    if show in ("audit", "depth") and t.get("subgroups"):
        raise fail(f"{where}: show", "the audit reads class runs only; subgroup cells cannot be audited")
    group_by = tuple(t.get("group_by", ("dataset", "method")))
    for key in group_by:
        if key not in GROUP_KEYS:
            raise fail(f"{where}: group_by", f"unknown row key {key!r} (known: {', '.join(GROUP_KEYS)})", key,
                       list(GROUP_KEYS))
    cells = t.get("cells")
    _check_cells(where, t, names)
    vary = t.get("vary") or {}
    if not isinstance(vary, dict):
        raise fail(f"{where}: vary", "must be a table of setting = [values]")
    for key, values in vary.items():
        if not isinstance(values, list) or not values:
            raise fail(f"{where}: vary.{key}", "needs a non-empty list of values")
    bar = t.get("bar") or {}
    if bar and show != "bar":
        raise fail(f"{where}: bar", 'thresholds are for show = "bar"; set it, or drop bar')
    check_keys(f"{where}: bar", bar, set(BAR_KEYS))
    goal = _goal(where, t.get("goal") or {}, show)
    claims = _claims(f"{where}: claims", t.get("claims"), show)
    together = tuple(int(k) for k in t.get("together", ()))
    if any(k < 1 for k in together):
        raise fail(f"{where}: together", "counts of classes forgotten at once must be 1 or more")
    return TableSpec(name=t["name"], title=t.get("title", ""), show=show, group_by=group_by,
                     methods=_methods(f"{where}: methods", t.get("methods")),
                     targets=_targets(f"{where}: targets", t.get("targets")), datasets=tuple(t.get("datasets", ())),
                     subgroups=tuple(t.get("subgroups", ())),
                     together=together, vary=tuple((k, tuple(_frozen(v) for v in vs)) for k, vs in vary.items()),
                     cells=cells, seeds=tuple(int(x) for x in t["seeds"]) if "seeds" in t else None,
                     bar=tuple((k, float(v)) for k, v in {**BAR_KEYS, **bar}.items()) if show == "bar" else (),
                     goal=tuple((k, str(v) if k in ("method", "preset") else float(v)) for k, v in sorted(goal.items())),
                     claims=claims)


def _claims(where: str, value: Any, show: str) -> tuple[Claim, ...]:
    if not value:
        return ()
    if show != "bar":
        raise fail(where, 'claims compare the columns of show = "bar"; set it, or drop claims')
    if not isinstance(value, list):
        raise fail(where, 'needs a list of { says, method, column, than, higher }')
    out = []
    for i, c in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(c, dict):
            raise fail(at, 'needs a table { says, method, column, than, higher }')
        check_keys(at, c, CLAIM_KEYS)
        missing = sorted(CLAIM_KEYS - set(c))
        if missing:
            raise fail(at, f"field {missing[0]!r} is missing (a claim needs {', '.join(sorted(CLAIM_KEYS))})")
        if c["column"] not in BAR_KEYS:
            raise fail(f"{at}.column", f"unknown column {c['column']!r} (known: {', '.join(BAR_KEYS)})", c["column"],
                       list(BAR_KEYS))
        than = c["than"]
        if not isinstance(than, list) or not than or c["method"] in than:
            raise fail(f"{at}.than", "needs a non-empty list of other methods")
        if not isinstance(c["higher"], bool):
            raise fail(f"{at}.higher", "must be true or false")
        out.append(Claim(str(c["says"]), str(c["method"]), str(c["column"]), tuple(str(m) for m in than), c["higher"]))
    return tuple(out)


def _suite_path(text_name: str) -> Path:
    """The file of a suite: ``text_name`` itself, or the shipped suite of that name."""
    path = Path(text_name)
    if path.is_file():
        return path
    if text_name in shipped_suites():
        return Path(str(resources.files("clipunlearn.benchmark") / "suites" / f"{text_name}.toml"))
    hint = suggest(text_name, shipped_suites())
    raise ClipUnlearnError(f"No suite file {text_name!r} and no shipped suite of that name.{hint} "
                           f"Shipped: {', '.join(shipped_suites())}; or pass a .toml file.")


def _tables(where: str, data: dict[str, Any]) -> list[TableSpec]:
    """The suite's ``[[tables]]``, or the three tables of the short form (top-level methods and targets)."""
    tables: list[TableSpec] = []
    if data.get("tables"):
        if "methods" in data or "targets" in data:
            raise fail(where, "has both [[tables]] and top-level methods/targets; move them into a table")
        for i, t in enumerate(data["tables"]):
            table = _table(f"{where}: tables[{i}]", t, [x.name for x in tables])
            if table.name in {x.name for x in tables}:
                raise fail(f"{where}: tables[{i}]", f"a second table named {table.name!r}; names must differ")
            tables.append(table)
        return tables
    for key in ("methods", "targets"):
        if not data.get(key):
            raise fail(where, f"field {key!r} is missing or empty (or give [[tables]])")
    base = TableSpec("methods", "Forgetting per method", "forgetting", ("dataset", "method"),
                     _methods(f"{where}: methods", data["methods"]), _targets(f"{where}: targets", data["targets"]))
    return [base, TableSpec("classes", "Forgetting per class", "forgetting", ("dataset", "classes", "method"),
                            cells="methods"),
            TableSpec("retrieval", "Retrieval precision@k of the forgotten class", "retrieval",
                      ("dataset", "method"), cells="methods")]


def _audit_settings(where: str, data: dict[str, Any]) -> tuple[tuple[str, ...] | None, int, str]:
    """The suite's ``[audit]``: its attacks (None: the audit's own), seed and relearning grid, checked."""
    audit = data.get("audit") or {}
    check_keys(f"{where}: audit", audit, AUDIT_KEYS)
    attacks = audit.get("attacks")
    if attacks is not None:
        from ..audit import ATTACKS

        if not isinstance(attacks, list) or not attacks:
            raise fail(f"{where}: audit.attacks", f"needs a non-empty list of attacks ({', '.join(ATTACKS)})")
        for a in attacks:
            if a not in ATTACKS:
                raise fail(f"{where}: audit.attacks", f"unknown attack {a!r} (known: {', '.join(ATTACKS)})", a,
                           list(ATTACKS))
    relearning = audit.get("relearning", "held-out")
    from ..audit.relearning import GRIDS

    if relearning not in GRIDS:
        raise fail(f"{where}: audit.relearning", f"unknown relearning grid {relearning!r} (known: {', '.join(GRIDS)})",
                   str(relearning), list(GRIDS))
    return (None if attacks is None else tuple(attacks)), int(audit.get("seed", 0)), relearning


def _check_references(where: str, tables: list[TableSpec]) -> None:
    """Every method a claim or a goal names is one of its table's cells; an audit table reads class runs."""
    for t in tables:
        shown = _source(tables, t)
        names = sorted({m.method for m in shown.methods})
        named = [(f"claims[{i}]", m) for i, c in enumerate(t.claims) for m in (c.method, *c.than)]
        for field_name, m in named + ([("goal.method", dict(t.goal)["method"])] if t.goal else []):
            if m not in names:
                raise fail(f"{where}: table {t.name!r}: {field_name}", f"{m!r} is not a method of its cells "
                           f"(table {shown.name!r})", m, names)
        goal = dict(t.goal)
        if "preset" in goal:
            presets = sorted({m.preset for m in shown.methods if m.method == goal["method"]})
            if goal["preset"] not in presets:
                raise fail(f"{where}: table {t.name!r}: goal.preset", f"{goal['method']} has no row of preset "
                           f"{goal['preset']!r} in table {shown.name!r} (its presets there: {', '.join(presets)})",
                           goal["preset"], presets)
        if t.show == "audit" and t.cells and suite_table_subgroups(tables, t):
            raise fail(f"{where}: table {t.name!r}", "the audit reads class runs only; its cells are subgroup runs")


def load_suite(name_or_path: str | os.PathLike[str]) -> Suite:
    """A shipped suite by name (``quick``) or a TOML file, checked field by field."""
    path = _suite_path(str(name_or_path))
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ClipUnlearnError(f"{where}: not valid TOML ({e}). Fix the file.") from None
    check_keys(where, data, SUITE_KEYS)
    if not data.get("models"):
        raise fail(where, "field 'models' is missing or empty")
    tables = _tables(where, data)
    rule = data.get("classes") or {}
    check_keys(f"{where}: classes", rule, CLASS_KEYS)
    classes = ClassRule(paper={k: tuple(v) for k, v in (rule.get("paper") or {}).items()},
                        min_top1=float(rule.get("min_top1", 0.3)), per_dataset=int(rule.get("per_dataset", 3)))
    attacks, audit_seed, relearning = _audit_settings(where, data)
    _check_references(where, tables)
    return Suite(name=data.get("name", path.stem), source=where, models=list(data["models"]), tables=tables,
                 seeds=[int(s) for s in data.get("seeds", [0])],
                 other_datasets=data.get("other_datasets"), n_per_class=int(data.get("n_per_class", 64)),
                 max_steps=data.get("max_steps"), max_epochs=data.get("max_epochs"),
                 retrieval=bool(data.get("retrieval", True)), template_change=bool(data.get("template_change", True)),
                 description=data.get("description", ""), classes=classes,
                 audit_attacks=attacks, audit_seed=audit_seed, audit_relearning=relearning,
                 oracles=parse_oracles(f"{where}: oracles", data.get("oracles")),
                 precision=_precision(where, data.get("precision", "auto")))


def _precision(where: str, value: object) -> str:
    """A suite's ``precision`` key, checked."""
    if str(value) not in PRECISIONS:
        raise fail(f"{where}: precision", f"{value!r} is not a precision (auto, fp32, tf32 or bf16)", str(value),
                   list(PRECISIONS))
    return str(value)


def _source(tables: list[TableSpec], table: TableSpec) -> TableSpec:
    """The table whose cells ``table`` shows (following ``cells = "other table"``)."""
    while table.cells:
        table = next(t for t in tables if t.name == table.cells)
    return table


def suite_table_subgroups(tables: list[TableSpec], table: TableSpec) -> bool:
    """Whether the cells a table shows are subgroup runs (following ``cells = "other table"``)."""
    return bool(_source(tables, table).subgroups)


def _check_dataset(name: str, data_root: str | None, where: str, classes: Sequence[str] | None = None) -> None:
    """Dataset ``name`` is known and its test split can be read under ``data_root``, with ``classes`` in it
    (when given: then an empty list is refused)."""
    from ..data import get_dataset_spec, load_image_set

    try:
        get_dataset_spec(name)
        images = load_image_set(name, data_root, "test")
        if classes is not None:
            images.class_indices(list(classes))
    except ClipUnlearnError as e:
        raise ClipUnlearnError(f"{where}: {e}") from None


def _check_methods(table: TableSpec, tw: str) -> None:
    """Each method of ``table`` exists and builds with its preset, ablation and options, and with every
    value the table varies; each varied key is a cell setting or an option of the method."""
    from ..methods import get_method, method_names

    for i, m in enumerate(table.methods):
        w = f"{tw}: methods[{i}]"
        if m.method not in method_names():
            raise fail(w, f"unknown method {m.method!r}", m.method, method_names())
        method = get_method(m.method)
        options = {f.name for f in fields(method.config_cls)}
        for key, _ in table.vary:
            if key not in SPEC_SETTINGS and key not in options:
                raise fail(f"{tw}: vary", f"{key!r} is neither a cell setting nor an option of {m.method}", key,
                           sorted(SPEC_SETTINGS) + sorted(options))
        trials = [dict(m.options)] + [{**dict(m.options), k: v} for k, vs in table.vary for v in vs
                                      if k not in SPEC_SETTINGS]
        for tried in trials:
            try:
                method.build_config(m.preset, "resnet", m.ablation, tried)
            except ClipUnlearnError as e:
                raise ClipUnlearnError(f"{w}: {e}") from None


def _check_subgroups(table: TableSpec, tw: str, data_root: str | None) -> None:
    """Each subgroup setting of ``table`` is known and its images can be read under ``data_root``."""
    from ..data.subgroups import check_setting, get_setting, setting_names

    for name in table.subgroups:
        if name not in setting_names():
            raise fail(f"{tw}: subgroups", f"unknown subgroup setting {name!r}", name, setting_names())
        try:
            check_setting(get_setting(name), data_root)
        except ClipUnlearnError as e:
            raise ClipUnlearnError(f"{tw}: subgroups: {e}") from None


def check_suite(suite: Suite, data_root: str | None, models: list[str] | None = None) -> None:
    """Every method, preset, ablation, option, varied setting, model, dataset and class name exists:
    before any cell runs."""
    from ..models import available_models
    from ..models.zoo import ZOO_MODELS

    where = suite.source
    known_models = set(available_models()) | set(ZOO_MODELS)
    for model in models or suite.models:
        if model not in known_models:
            raise fail(f"{where}: models", f"unknown model {model!r}", model, sorted(known_models))
    for table in suite.tables:
        tw = f"{where}: table {table.name!r}"
        _check_methods(table, tw)
        for i, t in enumerate(table.targets):
            _check_dataset(t.dataset, data_root, f"{tw}: targets[{i}]", t.classes)
        for name in table.datasets:
            _check_dataset(name, data_root, f"{tw}: datasets")
        _check_subgroups(table, tw, data_root)
    for name, classes in suite.classes.paper.items():
        _check_dataset(name, data_root, f"{where}: classes.paper.{name}", classes)
    for name in suite.other_datasets or []:
        _check_dataset(name, data_root, f"{where}: other_datasets")
    check_oracles(where, suite.oracles, data_root)
    if suite.oracles and not any(t.show == "audit" for t in suite.tables):
        raise fail(f"{where}: oracles", 'are for audits, and no table has show = "audit"; add one, or drop oracles')
