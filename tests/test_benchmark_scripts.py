"""benchmarks/methods_speed.py: a method that refuses the model is listed, not fatal; bad input still stops it."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from clipunlearn.errors import DataError, TrainingError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "methods_speed.py"


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location("methods_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_results(method: str):
    return SimpleNamespace(seconds={"generation": 1.0, "forgetting": 3.0 if method == "lip" else 1.5, "evaluation": 2.0},
                           raw={"zero_shot": "ZS"}, target=SimpleNamespace(before=0.8, after=0.1), avg_score=0.05)


def test_a_refusing_method_is_listed_with_its_reason(script, monkeypatch, tmp_path):
    def forget(settings):
        if settings.method == "forget-remind-restore":
            raise TrainingError("forget-remind-restore needs batch-norm layers; set remind_alignment=false.")
    monkeypatch.setattr(script, "forget", forget)
    monkeypatch.setattr(script, "read_results", lambda out: _fake_results(Path(out).name))
    page, out_json = tmp_path / "page.md", tmp_path / "speed.json"
    monkeypatch.setattr(sys, "argv", ["methods_speed.py", "--model", "mini-vit", "--methods", "amns,forget-remind-restore,lip",
                                      "--page", str(page), "--json", str(out_json)])
    assert script.main() == 0
    data = json.loads(out_json.read_text())
    assert [r["method"] for r in data["rows"]] == ["lip", "amns"]
    assert data["rows"][1]["vs_lip"] == pytest.approx(2.5 / 4.0, abs=1e-3)
    assert data["refused"] == {"forget-remind-restore": "forget-remind-restore needs batch-norm layers; "
                                                        "set remind_alignment=false."}
    text = page.read_text()
    assert "| amns | ZS | 1.0 | 1.5 | 2.5 | 0.62 | 0.80 → 0.10 | 0.050 |" in text
    assert "- forget-remind-restore: forget-remind-restore needs batch-norm layers" in text


def test_bad_input_is_not_taken_for_a_refusal(script, monkeypatch):
    def forget(settings):
        raise DataError("No dataset folder 'caltech101' under 'nowhere'; pass --data-root.")
    monkeypatch.setattr(script, "forget", forget)
    with pytest.raises(DataError, match="pass --data-root"):
        script.measure("lip", "unused", {"model": "mini-rn", "dataset": "caltech101", "classes": ["motorbike"],
                                         "data_root": "nowhere"})
