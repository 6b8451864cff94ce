"""Runs: the forget pipelines (a class of a dataset, a named concept, a subgroup of a class) and the run
folder they write (results.json, model.safetensors, report.md), the one typed reader of results.json,
and merging runs' models."""
from .concept import ConceptSettings, forget_concept
from .merge import merge_runs
from .pipeline import ForgetSettings, forget
from .report import write_report
from .results import SCHEMA_VERSION, BeforeAfter, RunResults, read_results
from .subgroup import SubgroupSettings, forget_subgroup

__all__ = ["SCHEMA_VERSION", "BeforeAfter", "ConceptSettings", "ForgetSettings", "RunResults", "SubgroupSettings",
           "forget", "forget_concept", "forget_subgroup", "merge_runs", "read_results", "write_report"]
