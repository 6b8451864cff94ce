"""The code passes ruff with the project's rules (pyproject.toml [tool.ruff]): no unused or undefined
name, no syntax error, imports in order, none of bugbear's likely bugs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("ruff", reason='ruff is not installed: pip install -e ".[test]"')
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_code_passes_the_linter():
    done = ruff("src", "tests", "benchmarks")
    assert done.returncode == 0, "ruff found (fix them, or `ruff check --fix`):\n" + done.stdout + done.stderr


def test_the_linter_reads_the_project_rules(tmp_path):
    """The same rules find an unused import and a loop variable a closure does not bind."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "bad.py").write_text("import os\n\nfns = []\nfor i in range(3):\n    fns.append(lambda: i)\n")
    done = ruff("bad.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "bad.py:1:8: F401" in done.stdout and "B023" in done.stdout, done.stdout
