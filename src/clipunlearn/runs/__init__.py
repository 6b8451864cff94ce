"""Runs: the forget pipeline and the run folder it writes (results.json, model.safetensors, report.md)."""
from .pipeline import ForgetSettings, forget
from .report import write_report

__all__ = ["ForgetSettings", "forget", "write_report"]
