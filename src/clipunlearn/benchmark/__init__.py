"""Benchmark suites: data files of cells (RunSpecs), run by an executor into resumable run folders."""
from .executors import EXECUTORS, ExecutorOptions, get_executor
from .runner import Plan, plan, run_suite
from .suite import Suite, check_suite, load_suite, shipped_suites

__all__ = ["EXECUTORS", "ExecutorOptions", "Plan", "Suite", "check_suite", "get_executor", "load_suite", "plan",
           "run_suite", "shipped_suites"]
