"""A Grafana dashboard for speculative decoding (pure: a JSON-ready dict), with the rules' panels: acceptance
rate and mean acceptance length (5 m and 1 h), acceptance by draft position, drafted and accepted tokens
per second, KV-cache usage and preemptions, running and waiting requests, P99 TPOT. It reads the recording
rules (`specwise rules`) and vLLM's own series, templated by model and instance; the definitions are vLLM's
(acceptance = accepted / drafted tokens, length = 1 + accepted / drafts)."""

from __future__ import annotations

from typing import Any

from specwise.metrics import DRAFTS, KV_USAGE
from specwise.monitor.rules import PREEMPTIONS, TPOT_HISTOGRAMS, series

SCHEMA_VERSION = 39
FILTER = 'model_name=~"$model_name", instance=~"$instance"'


def _where(name: str) -> str:
    return f"{name}{{{FILTER}}}"


def _panel(pid: int, title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int,
           thresholds: list[tuple[str, float | None]] | None = None) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for color, value in (thresholds or [("green", None)])]
    return {"id": pid, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []},
            "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                        for i, (expr, legend) in enumerate(targets)]}


def panels(break_even: float) -> list[dict[str, Any]]:
    who = "{{model_name}} {{instance}}"
    tpot = " or ".join(f'histogram_quantile(0.99, sum by (le, model_name, instance) '
                       f'(rate({h}_bucket{{{FILTER}}}[5m])))' for h in TPOT_HISTOGRAMS)
    specs: list[tuple[str, list[tuple[str, str]], str, list[tuple[str, float | None]] | None]] = [
        ("Acceptance rate", [(_where(series("acceptance_rate", "5m")), f"5m {who}"),
                             (_where(series("acceptance_rate", "1h")), f"1h {who}")], "percentunit",
         [("red", None), ("green", break_even)]),
        ("Mean acceptance length (tokens per step)", [(_where(series("acceptance_length", "5m")), f"5m {who}"),
                                                      (_where(series("acceptance_length", "1h")), f"1h {who}")],
         "none", None),
        ("Acceptance by draft position", [(_where(series("position_acceptance", "5m")),
                                           "position {{position}} " + who)], "percentunit", None),
        ("Drafted and accepted tokens per second",
         [(_where(series("draft_tokens_per_second", "5m")), f"drafted {who}"),
          (_where(series("accepted_tokens_per_second", "5m")), f"accepted {who}"),
          (_where(series("drafts_per_second", "5m")), f"drafts {who}")], "short", None),
        ("KV-cache usage and preemptions",
         [(" or ".join(_where(name) for name in KV_USAGE), f"KV usage {who}"),
          (f"sum by (model_name, instance) (increase({_where(PREEMPTIONS)}[5m]))", f"preemptions / 5m {who}")],
         "percentunit", None),
        ("Running and waiting requests", [(_where("vllm:num_requests_running"), f"running {who}"),
                                          (_where("vllm:num_requests_waiting"), f"waiting {who}")], "short", None),
        ("P99 time per output token", [(tpot, f"P99 TPOT {who}")], "s", None),
    ]
    return [_panel(i + 1, title, targets, unit, 12 * (i % 2), 8 * (i // 2), steps)
            for i, (title, targets, unit, steps) in enumerate(specs)]


def dashboard(break_even: float) -> dict[str, Any]:
    def variable(name: str, query: str) -> dict[str, Any]:
        return {"name": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": query, "refId": name}, "definition": query, "includeAll": True, "multi": True,
                "refresh": 2, "current": {"text": "All", "value": "$__all"}}

    return {
        "uid": "specwise-spec-decode", "title": "Speculative decoding (specwise)", "schemaVersion": SCHEMA_VERSION,
        "version": 1, "editable": True, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "tags": ["vllm", "speculative-decoding", "specwise"],
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
            variable("model_name", f"label_values({DRAFTS}, model_name)"),
            variable("instance", f'label_values({DRAFTS}{{model_name=~"$model_name"}}, instance)'),
        ]},
        "panels": panels(break_even),
    }
