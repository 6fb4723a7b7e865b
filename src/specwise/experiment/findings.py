"""An experiment's findings: for each candidate and workload, the A/B comparison by load, acceptance by
temperature and by draft position, the homogeneity control, the memory evidence and the verdict.

Pure: `build_findings` reads loaded runs and the stored config, never a server, so a report
can be rebuilt from the experiment directory alone (`findings_from_disk`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from specwise.analysis import (Bucket, Equivalence, LoadComparison, Point, ServerWindow, acceptance, compare, equivalence,
                               histogram, server_view)
from specwise.experiment.config import ExperimentConfig, Server, Workload
from specwise.experiment.controls import ControlResult, control_evidence
from specwise.experiment.layout import (FINDINGS, Cells, LaunchedServer, cell_runs, launched_servers, load_cells,
                                       load_label, stored_config)
from specwise.results import write_json_atomic
from specwise.verdict import Arm, BucketEvidence, Evidence, LoadEvidence, Rule, Verdict, acceptance_drop, decide


class MemoryEvidence(BaseModel):
    """Shares of memory for the memory rules, and the KV cache each launched server reported."""

    source: str
    target_share: float
    draft_share: float
    kv_cache_tokens: float | None = None
    baseline_kv_cache_tokens: float | None = None
    max_concurrency: float | None = None
    baseline_max_concurrency: float | None = None
    context: float | None = None


class Finding(BaseModel):
    candidate: str
    workload: str
    temperatures: str
    load_unit: str
    loads: list[LoadComparison]
    server_acceptance: ServerWindow | None = None
    buckets: list[Bucket] = Field(default_factory=list)
    histogram: dict[float, list[int]] = Field(default_factory=dict)
    control: ControlResult | None = None
    memory: MemoryEvidence | None = None
    equivalence: Equivalence | None = None
    verdict: Verdict


class Findings(BaseModel):
    experiment: str
    load_unit: str
    findings: list[Finding]
    comparisons: list[Rule] = Field(default_factory=list, description="candidate vs candidate acceptance")
    best: dict[str, str] = Field(default_factory=dict, description="per workload: the candidate to use, and why")
    missing: list[str] = Field(default_factory=list, description="cells with no stored run")


def memory_evidence(config: ExperimentConfig, launched: dict[str, LaunchedServer],
                    candidate: Server) -> MemoryEvidence | None:
    """From the experiment file's memory section, or what specwise launched."""
    if config.memory:
        m = config.memory
        return MemoryEvidence(source="experiment file", target_share=m.target_weights_gb / m.device_gb,
                              draft_share=m.draft_weights_gb / (m.device_gb * m.gpu_memory_utilization))
    info = launched.get(candidate.name)
    if not info or not info.target_weights_bytes:
        return None
    # The CPU engine is given its weights plus a fixed KV-cache space: that is its "device memory".
    total = info.target_weights_bytes + info.draft_weights_bytes + info.kv_cache_space_bytes
    out = MemoryEvidence(source="launched server (weights + KV-cache space)",
                         target_share=info.target_weights_bytes / total, draft_share=info.draft_weights_bytes / total)
    base = launched.get(config.baseline.name)
    if info.kv_cache_tokens and base and base.kv_cache_tokens:
        out = out.model_copy(update={
            "kv_cache_tokens": info.kv_cache_tokens, "baseline_kv_cache_tokens": base.kv_cache_tokens,
            "max_concurrency": info.max_concurrency, "baseline_max_concurrency": base.max_concurrency,
            "context": info.context})
    return out


def arm(p: Point) -> Arm:
    return Arm(requests=p.requests, errors=p.requests - p.ok, short=p.short, complete=p.complete,
               client_bound=p.client_bound)


def load_evidence(c: LoadComparison) -> LoadEvidence:
    assert c.tpot_p50_speedup is not None
    cand, base = c.candidate, c.baseline
    return LoadEvidence(
        load=c.load, tpot_speedup=c.tpot_p50_speedup, tpot_p99_speedup=c.tpot_p99_speedup,
        requests=min(base.ok, cand.ok), batch=cand.server.running_max if cand.server else None,
        candidate={f"p99_{m}": v for m, v in cand.p99_ms().items()},
        baseline={f"p99_{m}": v for m, v in base.p99_ms().items()},
        preemptions=cand.server.preemptions if cand.server else None,
        baseline_preemptions=base.server.preemptions if base.server else None,
        kv_usage_max=cand.server.kv_cache_usage_max if cand.server else None,
        baseline_kv_usage_max=base.server.kv_cache_usage_max if base.server else None,
        baseline_arm=arm(base), candidate_arm=arm(cand),
        buckets=tuple(BucketEvidence(temperature=b.temperature, tpot_speedup=b.tpot_p50_speedup, requests=b.requests,
                                     tpot_p99_speedup=b.tpot_p99_speedup) for b in c.buckets),
        ttft_change=c.ttft_p50_change, e2e_speedup=c.e2e_p50_speedup, throughput_ratio=c.throughput_ratio,
        goodput=(base.goodput, cand.goodput) if base.goodput is not None and cand.goodput is not None else None,
        baseline_tpot_ms=base.tpot_p50.value if base.tpot_p50 else None,
        candidate_tpot_ms=cand.tpot_p50.value if cand.tpot_p50 else None,
        acceptance_length=cand.server.mean_acceptance_length if cand.server else None)


def finding(config: ExperimentConfig, cells: Cells, launched: dict[str, LaunchedServer], workload: Workload,
            cand: Server, seed: int = 0) -> tuple[Finding, list[str]]:
    """One candidate on one workload, and the cells it misses."""
    unit, base = config.loads.unit, config.baseline
    comparisons, cand_cells, base_cells, missing = [], [], [], []
    for level in config.loads.levels:
        b, c = cell_runs(cells, base.name, workload.name, level), cell_runs(cells, cand.name, workload.name, level)
        missing += [f"{name} · {workload.name} · {load_label(unit, level)}" for name, cell in ((base.name, b),
                                                                                              (cand.name, c)) if not cell]
        if b and c:
            comparisons.append(compare(b, c, seed))
            cand_cells.append(c)
            base_cells.append(b)
    window = server_view(cand_cells)
    records = [r for cell in cand_cells for r in cell.records]
    bks = acceptance(records, cand.spec_k).buckets
    total = sum(bk.requests for bk in bks) or 1
    loads = [load_evidence(c) for c in comparisons if c.tpot_p50_speedup]
    control, control_result = control_evidence(config, cells, cand, workload, loads, seed)
    memory = memory_evidence(config, launched, cand)
    info = launched.get(cand.name)
    evidence = Evidence(
        loads=loads, load_unit=unit, acceptance=window.acceptance_rate if window else None,
        bucket_p10={bk.temperature: bk.p10 for bk in bks if bk.p10 is not None},
        bucket_share={bk.temperature: bk.requests / total for bk in bks},
        temperatures=workload.mix, slo_ms=config.slo.as_limits(), primary_slo=config.primary_slo,
        monitoring=config.monitoring, target_share=memory.target_share if memory else None,
        draft_share=memory.draft_share if memory else None, control=control, k=cand.spec_k,
        max_batch=info.max_num_seqs if info else cand.max_num_seqs, production_temperatures=workload.production_mix,
        equivalence=equivalence([r for cell in base_cells for r in cell.records], records),
        exact_by_design=cand.exact_by_design)
    return Finding(candidate=cand.name, workload=workload.name, temperatures=workload.temperatures, load_unit=unit,
                   loads=comparisons, server_acceptance=window, buckets=bks, histogram=histogram(records),
                   control=control_result, memory=memory, equivalence=evidence.equivalence,
                   verdict=decide(evidence)), missing


def candidates_compared(config: ExperimentConfig, findings: Sequence[Finding]) -> list[Rule]:
    """Each pair of candidates' acceptance on each workload (e.g. quantized vs not)."""
    rules = []
    by_key = {(f.candidate, f.workload): f for f in findings}
    cands = config.candidates
    for workload in config.workloads:
        for i, a in enumerate(cands):
            for b in cands[i + 1:]:
                fa, fb = by_key.get((a.name, workload.name)), by_key.get((b.name, workload.name))
                acc = [f.server_acceptance.acceptance_rate if f and f.server_acceptance else None for f in (fa, fb)]
                rule = acceptance_drop(a.name, acc[0], b.name, acc[1])
                rule.name += f" ({workload.name})"
                rules.append(rule)
    return rules


def best_candidate(group: Sequence[Finding], unit: str) -> str:
    """Of the candidates a workload's verdicts allow, the fastest at the lowest load (e.g. n-gram vs draft)."""
    def low_speedup(f: Finding) -> float:
        first = min(f.loads, key=lambda c: c.load) if f.loads else None
        return first.tpot_p50_speedup.value if first and first.tpot_p50_speedup else 0.0

    allowed = [f for f in group if f.verdict.decision.allows]
    shown = ", ".join(f"{f.candidate} {low_speedup(f):.2f}× ({f.verdict.decision.value})" for f in group)
    if not allowed:
        return f"none: no candidate's verdict allows speculation (TPOT speedup at the lowest {unit}: {shown})"
    best = max(allowed, key=low_speedup)
    return f"{best.candidate} — the fastest allowed at the lowest {unit} ({shown})"


def build_findings(config: ExperimentConfig, cells: Cells, launched: dict[str, LaunchedServer] | None = None,
                   seed: int = 0) -> Findings:
    launched = launched or {}
    findings, missing = [], []
    for workload in config.workloads:
        for cand in config.candidates:
            f, lacking = finding(config, cells, launched, workload, cand, seed)
            findings.append(f)
            missing += lacking
    unit = config.loads.unit
    return Findings(experiment=config.name, load_unit=unit, findings=findings,
                    comparisons=candidates_compared(config, findings),
                    best={w.name: best_candidate([f for f in findings if f.workload == w.name], unit)
                          for w in config.workloads}, missing=sorted(set(missing)))


def findings_from_disk(root: Path | str, config: ExperimentConfig | None = None) -> Findings:
    """The findings of an experiment directory: its cells and servers.json, under its stored config unless
    given. Reads only; `write_findings` stores them."""
    root = Path(root)
    config = config or stored_config(root)
    return build_findings(config, load_cells(root, config), launched_servers(root), seed=config.seed)


def write_findings(root: Path, findings: Findings) -> Findings:
    write_json_atomic(root / FINDINGS, findings.model_dump(mode="json"))
    return findings
