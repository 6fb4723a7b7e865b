"""The house rules (docs/architecture.md): the pure core imports clean, the public door is pinned, and
each room's door names what it offers."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import specwise

FORBIDDEN = ("httpx", "asyncio", "subprocess", "typer")
PURE = ("specwise", "specwise.catalog", "specwise.check", "specwise.thresholds", "specwise.metrics",
        "specwise.results", "specwise.workload", "specwise.workload.logs", "specwise.workload.traffic",
        "specwise.workload.replay", "specwise.verdict.method", "specwise.experiment.emit", "specwise.tune", "specwise.tune.search",
        "specwise.tune.result", "specwise.report.tune_page", "specwise.plan", "specwise.analysis", "specwise.verdict",
        "specwise.experiment.findings", "specwise.experiment.controls", "specwise.report",
        "specwise.report.html_page", "specwise.report.markdown_page", "specwise.report.plots",
        "specwise.report.console", "specwise.report.files", "specwise.report.watch_page", "specwise.monitor", "specwise.monitor.view",
        "specwise.monitor.rules", "specwise.monitor.grafana")
ROOMS = ("catalog", "results", "workload", "load", "plan", "analysis", "verdict", "engine", "experiment", "report",
         "monitor", "tune")


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_imports_no_network_process_or_cli(module: str) -> None:
    """A fresh interpreter: importing the module leaves the HTTP client, the event loop, subprocess and
    the CLI framework unloaded (rebuilding a report from disk needs none of them)."""
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_purity_check_can_fail() -> None:
    """The same probe on the load generator does see httpx and asyncio."""
    code = "import json, sys, specwise.load; print(json.dumps([m for m in ('httpx', 'asyncio') if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["httpx", "asyncio"]


PUBLIC = ["Architecture", "BenchConfig", "BenchSummary", "Check", "Decision", "Estimate", "Events", "Evidence",
          "ExperimentConfig", "Findings", "GPU", "LoadEvidence", "Plan", "PlanInputs", "Precision", "RequestRecord",
          "Run", "ServerSpec", "SpecwiseError", "Status", "Verdict", "VllmServer", "__version__", "build_plan",
          "decide", "embedded", "execute_bench", "execute_experiment", "findings_from_disk", "load_config",
          "load_run", "resolve_gpu", "resolve_model", "summarize", "write_report"]


def test_the_public_api_is_pinned() -> None:
    """Adding or removing a public name is a decision: this list changes with it."""
    assert sorted(specwise.__all__) == sorted(PUBLIC)
    for name in specwise.__all__:
        assert getattr(specwise, name) is not None
    with pytest.raises(AttributeError):
        specwise.no_such_name  # noqa: B018


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_has_a_door_that_names_its_api(room: str) -> None:
    door = importlib.import_module(f"specwise.{room}")
    assert door.__doc__ and door.__all__
    for name in door.__all__:
        assert getattr(door, name) is not None, name
