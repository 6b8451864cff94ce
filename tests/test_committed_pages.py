"""Committed pages name no folder of the machine that made them (issue 38, item 5): every text file under
``docs/`` and the README, searched for absolute paths of a machine's working folders.

Every page is made by the project's own commands, which print paths relative to the page (or a
placeholder), so no page is excepted.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".md", ".json", ".html", ".csv", ".toml", ".txt"}
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|home|root|mnt|Users|private|scratch|var/folders)/")


def _pages() -> list[Path]:
    files = [ROOT / "README.md", *(p for p in (ROOT / "docs").rglob("*") if p.suffix in SUFFIXES)]
    return [p for p in files if p.is_file()]


def _with_machine_paths() -> set[str]:
    found = set()
    for page in _pages():
        if MACHINE_PATH.search(page.read_text(encoding="utf-8", errors="replace")):
            found.add(page.relative_to(ROOT).as_posix())
    return found


def test_no_committed_page_names_a_folder_of_the_machine_that_made_it():
    found = sorted(_with_machine_paths())
    assert not found, f"absolute paths in {len(found)} file(s), e.g. {found[:3]}: print them relative (shown_path)"


def test_the_search_finds_a_machine_path_and_spares_what_is_not_one():
    hits = ["made in /work/bench/x", "`--out /tmp/a`", "(/home/me/data)", "/root/.cache/clip"]
    spared = ["see docs/results/x.md", "https://example.org/work/x", "lr 1e-4/work", "~/work/x", "a/tmp/b"]
    assert all(MACHINE_PATH.search(h) for h in hits)
    assert not any(MACHINE_PATH.search(s) for s in spared)
