"""`specwise report` on an experiment directory written before the restructuring gives the same verdicts
and numbers. The fixture is a real run (embedded pair on vLLM's CPU build: baseline, draft and n-gram;
structured T=0 and a mixed 0/0.5/1.0 workload with its control; concurrency 1 and 4; 12 requests per
cell) with the report.json that the code of commit 543882e wrote for it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from specwise.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "experiment-543882e"

# What the restructuring changed on purpose, and nothing else:
RENAMED = {"detail": "reason"}                        # one Check for plan checks and verdict rules
TEXT_FIXES = {"(vLLM ≥ 0.32)": "(vLLM ≥ 0.24.0)"}     # num_speculative_tokens_per_batch_size ships in 0.24.0
# Fields the old code left empty and the new one fills: the pooled server window now has what a single
# window always had (one builder for both), and the verdict carries its crossover as a field.
FILLED = {"kv_cache_usage_mean", "waiting_max", "v0_acceptance_gauge", "prefix_cache_hit_rate", "crossover"}


def same(old: Any, new: Any, path: str = "") -> list[str]:
    """Differences between the old report and the new one, beyond the deliberate changes above."""
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = []
        for key, value in old.items():
            key_new = RENAMED.get(key, key)
            if key_new not in new:
                diffs.append(f"{path}.{key}: missing")
            else:
                diffs += same(value, new[key_new], f"{path}.{key_new}")
        for key, value in new.items():
            known = key in old or key in RENAMED.values()
            if not known and value is not None and key not in FILLED:
                diffs.append(f"{path}.{key}: new field {value!r}")
        return diffs
    if old == {} and new is None:       # "no memory evidence" was an empty dict, is now null
        return []
    if old is None and new is not None:
        return [] if path.rsplit(".", 1)[-1] in FILLED else [f"{path}: {old!r} → {new!r}"]
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} items → {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in same(a, b, f"{path}[{i}]")]
    if isinstance(old, float) or isinstance(new, float):
        ok = isinstance(old, int | float) and isinstance(new, int | float) and math.isclose(old, new, rel_tol=1e-9,
                                                                                             abs_tol=1e-12)
        return [] if ok else [f"{path}: {old!r} → {new!r}"]
    if isinstance(old, str):
        for before, after in TEXT_FIXES.items():
            old = old.replace(before, after)
    return [] if old == new else [f"{path}: {old!r} → {new!r}"]


def test_the_report_of_an_old_experiment_directory_is_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("expected-report.json"))
    result = CliRunner().invoke(app, ["report", str(root)])
    assert result.exit_code == 0, result.output
    old = json.loads((FIXTURE / "expected-report.json").read_text())
    new = json.loads((root / "report.json").read_text())
    assert [f["verdict"]["decision"] for f in new["findings"]] == [f["verdict"]["decision"] for f in old["findings"]]
    assert same(old, new) == []


def test_the_comparison_sees_a_changed_number() -> None:
    old = json.loads((FIXTURE / "expected-report.json").read_text())
    text = json.dumps(old, ensure_ascii=False).replace('"detail"', '"reason"')
    new = json.loads(text.replace("(vLLM ≥ 0.32)", "(vLLM ≥ 0.24.0)"))
    assert same(old, new) == []
    new["findings"][0]["loads"][0]["tpot_p50_speedup"]["value"] *= 1.001
    new["findings"][0]["verdict"]["headline"] += "!"
    assert len(same(old, new)) == 2
