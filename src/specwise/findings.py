"""An experiment's findings: for each candidate and workload, the A/B comparison by load, acceptance by
temperature and by draft position, the homogeneity control, the memory evidence and the verdict.

Pure: it reads loaded runs and the stored config, never a server. `specwise report` and
`specwise run` both end here, so a report can be rebuilt from the directory alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from specwise.analysis import CellRuns, LoadComparison, buckets, compare, histogram, pooled_acceptance
from specwise.experiment import CONTROL_SUFFIX, ExperimentConfig, Server, Workload, control_workload, load_label
from specwise.results import Run
from specwise.summary import Bucket, ServerWindow
from specwise.verdict import (P99_WORSE, TEMP_SPREAD, Control, Evidence, LoadEvidence, Rule, Verdict,
                              acceptance_drop, decide)


class Finding(BaseModel):
    candidate: str
    workload: str
    temperatures: str
    load_unit: str
    loads: list[LoadComparison]
    server_acceptance: ServerWindow | None = None
    buckets: list[Bucket] = Field(default_factory=list)
    histogram: dict[float, list[int]] = Field(default_factory=dict)
    control: dict[str, Any] | None = None
    memory: dict[str, Any] = Field(default_factory=dict)
    verdict: Verdict


class Findings(BaseModel):
    experiment: str
    load_unit: str
    findings: list[Finding]
    comparisons: list[Rule] = Field(default_factory=list, description="candidate vs candidate acceptance")
    best: dict[str, str] = Field(default_factory=dict, description="per workload: the candidate to use, and why")
    missing: list[str] = Field(default_factory=list, description="cells with no stored run")


Cells = dict[tuple[str, str, float], list[Run]]   # (server, workload, load) → repetitions


def _cell(cells: Cells, server: str, workload: str, level: float) -> CellRuns | None:
    runs = cells.get((server, workload, level))
    return CellRuns(server, workload, level, tuple(runs)) if runs else None


def divergent_loads(comparisons: Sequence[LoadComparison]) -> list[float]:
    """Loads where P50 TPOT improves while P99 TPOT regresses."""
    return [c.load for c in comparisons if c.tpot_p50_speedup and c.tpot_p99_speedup
            and c.tpot_p50_speedup.value > 1 and c.tpot_p99_speedup.value < P99_WORSE]


def needs_control(workload: Workload) -> bool:
    temps = [t for t, _ in workload.mix]
    return max(temps) - min(temps) > TEMP_SPREAD


def control_name(workload: Workload) -> str:
    return workload.control or control_workload(workload).name


def _memory(config: ExperimentConfig, servers: dict[str, Any], candidate: Server) -> dict[str, Any]:
    """Shares of memory for the memory rules: from the config's memory section, or what specwise launched."""
    if config.memory:
        m = config.memory
        return {"source": "experiment file", "target_share": m.target_weights_gb / m.device_gb,
                "draft_share": m.draft_weights_gb / (m.device_gb * m.gpu_memory_utilization)}
    info = servers.get(candidate.name)
    if not info or not info.get("target_weights_bytes"):
        return {}
    # The CPU engine is given its weights plus a fixed KV-cache space: that is its "device memory".
    total = info["target_weights_bytes"] + info["draft_weights_bytes"] + info["kv_cache_space_bytes"]
    out = {"source": "launched server (weights + KV-cache space)", "target_share": info["target_weights_bytes"] / total,
           "draft_share": info["draft_weights_bytes"] / total}
    base = servers.get(config.baseline.name, {})
    if info.get("kv_cache_tokens") and base.get("kv_cache_tokens"):
        out |= {"kv_cache_tokens": info["kv_cache_tokens"], "baseline_kv_cache_tokens": base["kv_cache_tokens"],
                "max_concurrency": info.get("max_concurrency"), "baseline_max_concurrency": base.get("max_concurrency"),
                "context": info.get("context")}
    return out


def _p99(point: Any) -> dict[str, float]:
    """P99s in ms under the SLO names of the config (p99_tpot, p99_ttft, p99_e2e)."""
    return {f"p99_{name}": getattr(point, f"{name}_p99").value for name in ("tpot", "ttft", "e2e")
            if getattr(point, f"{name}_p99") is not None}


def _load_evidence(c: LoadComparison) -> LoadEvidence:
    assert c.tpot_p50_speedup is not None
    cand, base = c.candidate, c.baseline
    return LoadEvidence(
        load=c.load, tpot_speedup=c.tpot_p50_speedup, tpot_p99_speedup=c.tpot_p99_speedup,
        requests=min(base.ok, cand.ok), batch=cand.server.running_max if cand.server else None,
        candidate=_p99(cand), baseline=_p99(base),
        preemptions=cand.server.preemptions if cand.server else None,
        baseline_preemptions=base.server.preemptions if base.server else None,
        kv_usage_max=cand.server.kv_cache_usage_max if cand.server else None)


def prescription(config: ExperimentConfig, server: Server, workload: Workload, level: float) -> str:
    control = control_workload(workload)
    flag = "--concurrency" if config.loads.unit == "concurrency" else "--rate"
    url = server.url or "URL"
    return (f"specwise bench --url {url} --dataset {control.dataset} --temperatures {control.temperatures} "
            f"{flag} {level:g} --requests {config.requests} --max-tokens {config.max_tokens} (and the same on the "
            "baseline)")


def analyze(config: ExperimentConfig, cells: Cells, servers: dict[str, Any] | None = None,
            seed: int = 0) -> Findings:
    servers = servers or {}
    unit = config.loads.unit
    base = config.baseline
    findings, missing = [], []
    for workload in config.workloads:
        for cand in config.candidates:
            comparisons, cand_cells = [], []
            for level in config.loads.levels:
                b, c = _cell(cells, base.name, workload.name, level), _cell(cells, cand.name, workload.name, level)
                for name, cell in ((base.name, b), (cand.name, c)):
                    if cell is None:
                        missing.append(f"{name} · {workload.name} · {load_label(unit, level)}")
                if b and c:
                    comparisons.append(compare(b, c, seed))
                    cand_cells.append(c)
            window = pooled_acceptance(cand_cells)
            bks = buckets(cand_cells, cand.spec_k)
            total = sum(bk.requests for bk in bks) or 1
            control, control_info = None, None
            div = divergent_loads(comparisons)
            if div and not needs_control(workload):
                control = Control(load=div[0], homogeneous=True)
            elif div:
                level = div[0]
                name = control_name(workload)
                cb, cc = _cell(cells, base.name, name, level), _cell(cells, cand.name, name, level)
                if cb and cc:
                    cmp = compare(cb, cc, seed)
                    control = Control(load=level, tpot_p99_speedup=cmp.tpot_p99_speedup)
                    control_info = {"workload": name, "load": level, "comparison": cmp.model_dump(mode="json")}
                else:
                    text = prescription(config, cand, workload, level)
                    control = Control(load=level, prescription=text)
                    control_info = {"workload": name, "load": level, "prescription": text}
            memory = _memory(config, servers, cand)
            evidence = Evidence(
                loads=[_load_evidence(c) for c in comparisons if c.tpot_p50_speedup], load_unit=unit,
                acceptance=window.acceptance_rate if window else None,
                bucket_p10={bk.temperature: bk.p10 for bk in bks if bk.p10 is not None},
                bucket_share={bk.temperature: bk.requests / total for bk in bks},
                temperatures=workload.mix, slo_ms=config.slo.as_limits(),
                primary_slo=config.primary_slo, monitoring=config.monitoring,
                target_share=memory.get("target_share"), draft_share=memory.get("draft_share"), control=control,
                k=cand.spec_k, max_batch=int(servers.get(cand.name, {}).get("max_num_seqs", cand.max_num_seqs)))
            findings.append(Finding(
                candidate=cand.name, workload=workload.name, temperatures=workload.temperatures, load_unit=unit,
                loads=comparisons, server_acceptance=window, buckets=bks, histogram=histogram(cand_cells),
                control=control_info, memory=memory, verdict=decide(evidence)))
    comparisons_rules = []
    by_key = {(f.candidate, f.workload): f for f in findings}
    cands = config.candidates
    for workload in config.workloads:
        for i, a in enumerate(cands):
            for b in cands[i + 1:]:
                fa, fb = by_key.get((a.name, workload.name)), by_key.get((b.name, workload.name))
                acc = [f.server_acceptance.acceptance_rate if f and f.server_acceptance else None for f in (fa, fb)]
                rule = acceptance_drop(a.name, acc[0], b.name, acc[1])
                rule.name += f" ({workload.name})"
                comparisons_rules.append(rule)
    return Findings(experiment=config.name, load_unit=unit, findings=findings, comparisons=comparisons_rules,
                    best={w.name: best_candidate([f for f in findings if f.workload == w.name], unit)
                          for w in config.workloads}, missing=sorted(set(missing)))


def best_candidate(group: Sequence[Finding], unit: str) -> str:
    """Of the candidates a workload's verdicts allow, the fastest at the lowest load (e.g. n-gram vs draft)."""
    def low_speedup(f: Finding) -> float:
        first = min(f.loads, key=lambda c: c.load) if f.loads else None
        return first.tpot_p50_speedup.value if first and first.tpot_p50_speedup else 0.0

    allowed = [f for f in group if f.verdict.decision.value in ("ENABLE", "ENABLE_WITH_LIMIT")]
    shown = ", ".join(f"{f.candidate} {low_speedup(f):.2f}× ({f.verdict.decision.value})" for f in group)
    if not allowed:
        return f"none: no candidate's verdict allows speculation (TPOT speedup at the lowest {unit}: {shown})"
    best = max(allowed, key=low_speedup)
    return f"{best.candidate} — the fastest allowed at the lowest {unit} ({shown})"


def control_cells(config: ExperimentConfig, findings: Findings) -> list[tuple[Workload, float, list[str]]]:
    """The homogeneous controls to run: (control workload, load, servers) where P50/P99 diverged on a mixed
    workload whose control is not part of the experiment and whose servers specwise launches."""
    todo: dict[tuple[str, float], set[str]] = {}
    declared = {w.name for w in config.workloads}
    for f in findings.findings:
        workload = config.workload(f.workload)
        if not (f.control and "prescription" in f.control) or workload.control in declared:
            continue
        servers = [config.baseline, next(s for s in config.candidates if s.name == f.candidate)]
        if any(s.launch is None for s in servers):
            continue  # external servers: prescribed, not run
        key = (workload.name, f.control["load"])
        todo.setdefault(key, set()).update(s.name for s in servers)
    order = [s.name for s in config.servers]
    return [(control_workload(config.workload(w)), level, sorted(names, key=order.index))
            for (w, level), names in sorted(todo.items())]


__all__ = ["CONTROL_SUFFIX", "Findings", "Finding", "analyze", "control_cells"]
