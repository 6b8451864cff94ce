"""Runs: the forget pipeline and the run folder it writes (results.json, model.safetensors, report.md),
and the one typed reader of results.json."""
from .pipeline import ForgetSettings, forget
from .report import write_report
from .results import SCHEMA_VERSION, BeforeAfter, RunResults, read_results

__all__ = ["SCHEMA_VERSION", "BeforeAfter", "ForgetSettings", "RunResults", "forget", "read_results", "write_report"]
