"""`specwise tune` on the embedded engine through the CLI: launched servers restarted per k (one at a time),
the search's first round on real per-position counters and step times, the surface predicted for the k it
did not run, a schedule and its vLLM command, the report files — and a rerun resumes without a run. (The
proof is an ordinary experiment, which tests/test_experiment_real.py runs on this engine; bench/tune_search.py
runs the whole tune with its proof.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

pytestmark = [pytest.mark.engine, pytest.mark.slow]

TUNE = """
name: real-tune
servers:
  - {name: baseline, role: baseline, launch: {mode: baseline}}
  - {name: draft, launch: {mode: draft, k: 4}}
workloads:
  - {name: structured-t0, dataset: structured, temperatures: "0"}
loads: {concurrency: [1, 8]}
requests: 10
warmup: 1
max_tokens: 24
tune: {ks: [2, 4], verify: false}
"""


def tune(path: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "specwise", "tune", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)


def test_tune_on_the_embedded_engine(tmp_path: Path) -> None:
    path = tmp_path / "tune.yaml"
    path.write_text(TUNE)
    out = tmp_path / "out"
    first = tune(path, out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    result = json.loads((out / "tune.json").read_text())
    # Half the grid (2 k × 2 loads + the baseline's 2 = 6): the baseline and k = 4 at both loads.
    assert result["runs"] == 4 and result["grid_runs"] == 6
    surface = {(p["k"], p["load"]): p for p in result["surface"]}
    assert all(surface[(4, load)]["measured"] for load in (1.0, 8.0))
    assert all(surface[(2, load)]["measured"] is None and surface[(2, load)]["predicted"] for load in (1.0, 8.0))
    # The CPU engine drafts nearly for free at batch 1: k = 4 beats the baseline there (measured, ~2-3×).
    assert surface[(4, 1.0)]["measured"] > 1.2 and result["picks"]["1.0"] == 4
    bands = result["schedule"]
    assert bands[0][0] == 1 and bands[-1][1] == 128 and all(a[1] + 1 == b[0] for a, b in zip(bands, bands[1:]))
    assert result["recommended"] == "unproven" and "--speculative-config" in result["command"]
    assert (out / "tune.html").exists() and (out / "tune.md").exists()
    assert "runs: 4 of the full grid's 6" in first.stdout
    launched = sorted(p.name.split("-")[1] for p in (out / "search" / "logs").glob("vllm-*.log"))
    assert launched == ["baseline", "draft"]    # one server at a time, named by mode: baseline, then k = 4
    again = tune(path, out)
    assert again.returncode == 0 and "starting" not in again.stdout, again.stdout[-2000:]
    assert json.loads((out / "tune.json").read_text())["schedule"] == result["schedule"]
