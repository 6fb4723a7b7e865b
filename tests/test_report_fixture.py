"""`specwise report` on an experiment directory written before the restructuring gives the same numbers,
and the verdicts the measurement-first decision gives for them. The fixture is a real run (embedded pair
on vLLM's CPU build: baseline, draft and n-gram; structured T=0 and a mixed 0/0.5/1.0 workload with its
control; concurrency 1 and 4; 12 requests per cell) with the report.json that the code of commit 543882e
wrote for it. The restructuring kept every number and verdict of that report (commit d1e2c6b); the
decision rework then changed the verdicts on purpose, and only them."""

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
# What the decision rework added beside the numbers: validity counts per arm, speedups per temperature.
# The load generator's marks (issue 14): how many requests it held back or timed late (none, in this old run).
# tune (issue 16): the batch each arm really held, from its requests' own timings.
ADDED = {"errors", "short", "complete", "buckets", "role", "agrees", "goodput", "client_bound", "decoding_batch"}


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
            if not known and value is not None and key not in FILLED | ADDED:
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


def without_verdicts(report: dict) -> dict:
    return {**report, "findings": [{k: v for k, v in f.items() if k != "verdict"} for f in report["findings"]],
            "best": {}}


def test_the_report_of_an_old_experiment_directory_keeps_its_numbers(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("expected-report.json"))
    result = CliRunner().invoke(app, ["report", str(root)])
    assert result.exit_code == 0, result.output
    old = json.loads((FIXTURE / "expected-report.json").read_text())
    new = json.loads((root / "report.json").read_text())
    assert same(without_verdicts(old), without_verdicts(new)) == []
    # The old code disabled everything but the draft on T=0 on rules of thumb. Measured:
    # draft on T=0 wins at c=1 (2.51× [2.20–2.63]) and is not proven at c=4 → a limit at 1;
    # n-gram on T=0 is undecided at c=1 (0.99×) with P99 significantly worse, and slower at c=4 → off;
    # on the mixed workload neither arm's c=1 CI clears the noise (12 requests), but the draft's T=0 class
    # alone is proven faster there → enable for that class only; the n-gram's → more requests decide.
    decisions = [(f["candidate"], f["workload"], f["verdict"]["decision"]) for f in new["findings"]]
    assert decisions == [("draft", "structured-t0", "ENABLE_WITH_LIMIT"), ("ngram", "structured-t0", "DISABLE"),
                         ("draft", "mixed", "ENABLE_WITH_LIMIT"), ("ngram", "mixed", "INCONCLUSIVE")]
    assert new["findings"][2]["verdict"]["limit"]["temperatures"] == [0]
    assert new["findings"][0]["verdict"]["limit"]["load"] == 1


def test_the_comparison_sees_a_changed_number() -> None:
    old = json.loads((FIXTURE / "expected-report.json").read_text())
    text = json.dumps(old, ensure_ascii=False).replace('"detail"', '"reason"')
    new = json.loads(text.replace("(vLLM ≥ 0.32)", "(vLLM ≥ 0.24.0)"))
    assert same(old, new) == []
    new["findings"][0]["loads"][0]["tpot_p50_speedup"]["value"] *= 1.001
    new["findings"][0]["loads"][0]["baseline"]["ok"] += 1
    assert len(same(old, new)) == 2
