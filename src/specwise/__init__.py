"""specwise: does speculative decoding pay off on your vLLM deployment?

The library's public API. Each name loads its room on first use, so `import specwise`
stays cheap and pulls in no HTTP client, event loop or subprocess until they are needed.

    plan        build_plan(PlanInputs(...)) → Plan              memory, pair checks, prediction, vLLM command
    bench       execute_bench(BenchConfig(...), out) → run dir    streamed load test of one server
    results     load_run(dir) → Run; summarize(run) → BenchSummary
    experiment  load_config(path) → ExperimentConfig; execute_experiment(config, out, Events())
                findings_from_disk(dir, config) → Findings     analysis, controls, verdicts
    verdict     decide(Evidence(...)) → Verdict                 the rules of SPEC §1 on measured evidence
    report      write_report(findings, dir)                     HTML, Markdown, JSON
    engine      VllmServer(ServerSpec(...)) / embedded(mode)    a real vLLM server, started and stopped
"""

from specwise._lazy import lazy_door

__version__ = "0.1.0"

_NAMES = {
    "SpecwiseError": ".errors",
    "Check": ".check", "Status": ".check",
    "Architecture": ".catalog", "GPU": ".catalog", "Precision": ".catalog", "resolve_gpu": ".catalog",
    "resolve_model": ".catalog",
    "Plan": ".plan", "PlanInputs": ".plan", "build_plan": ".plan",
    "BenchConfig": ".load", "execute_bench": ".load",
    "Run": ".results", "RequestRecord": ".results", "load_run": ".results",
    "BenchSummary": ".analysis", "Estimate": ".analysis", "summarize": ".analysis",
    "ExperimentConfig": ".experiment", "Events": ".experiment", "Findings": ".experiment",
    "execute_experiment": ".experiment", "findings_from_disk": ".experiment", "load_config": ".experiment",
    "Decision": ".verdict", "Evidence": ".verdict", "LoadEvidence": ".verdict", "Verdict": ".verdict",
    "decide": ".verdict",
    "write_report": ".report",
    "ServerSpec": ".engine.server", "VllmServer": ".engine.server", "embedded": ".engine.server",
}

__all__ = ["__version__", *sorted(_NAMES)]

__getattr__ = lazy_door(__name__, _NAMES)
