"""Prometheus recording and alerting rules for speculative decoding (pure: data in, YAML-ready dicts out).

vLLM exports counters, not rates: the recording rules turn them into acceptance rate
(accepted / drafted tokens), mean acceptance length (1 + accepted / drafts, with the bonus
token, as vLLM's own log line and dashboard define it), acceptance by draft position
(accepted at position i / drafts) and tokens per second, over 5 m, 1 h and 24 h. The
acceptance-rate counters have the same names in V0 and V1; V0 has no drafts counter, so
its acceptance length is emitted / (drafted / k) and needs k.

The alerts say what to do in their runbook annotation. The break-even acceptance is the
guide's 0.5 unless an experiment measured this deployment's (`thresholds_from_findings`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specwise.metrics import ACCEPTED, ACCEPTED_PER_POS, DRAFT_TOKENS, DRAFTS, KV_USAGE, V0_EMITTED
from specwise.thresholds import ACCEPT_OFF, KV_FULL

if TYPE_CHECKING:   # the experiment's findings are read, never imported at run time by the monitor
    from specwise.experiment import Findings

BY = "model_name, instance"
SPANS = ("5m", "1h", "24h")
# An acceptance length this far below its own 24 h level is a regression worth a look.
LENGTH_REGRESSION = 0.85
# Per-position collapse: the last position near zero while the first fell below half its usual level.
POSITION_NEAR_ZERO = 0.05
FIRST_POSITION_DROP = 0.5
TPOT_HISTOGRAMS = ("vllm:request_time_per_output_token_seconds", "vllm:time_per_output_token_seconds")
PREEMPTIONS = "vllm:num_preemptions_total"


def series(name: str, span: str) -> str:
    """The recording rule's name for a figure over a span."""
    return f"specwise:spec_decode_{name}:{span}"


@dataclass(frozen=True)
class Threshold:
    """Alert thresholds for one model (None: every model but `others`), and where they came from."""

    model: str | None
    break_even: float
    source: str
    tpot_p99_s: float | None = None     # alert when P99 TPOT exceeds this (the baseline's P99 at the limit)
    others: tuple[str, ...] = ()        # models with thresholds of their own, left out of this one


def thresholds_from_findings(findings: Findings, model_of: Mapping[str, str]) -> list[Threshold]:
    """Per served model (`model_of`: candidate name → model name), the break-even acceptance and the
    baseline's P99 TPOT the experiment measured at the verdict's limit (at the top load for an ENABLE).
    Where several workloads enabled one model, the strictest (highest break-even, lowest P99) holds; a
    model the experiment did not enable gets the guide's threshold with the rest."""
    best: dict[str, Threshold] = {}
    for f in findings.findings:
        v = f.verdict
        model = model_of.get(f.candidate)
        if not v.decision.allows or model is None or not f.loads:
            continue
        load = v.limit.load if v.limit else max(c.load for c in f.loads)
        be = v.break_even.get(load)
        if be is None:
            continue
        at = next(c for c in f.loads if c.load == load)
        p99 = at.baseline.tpot_p99.value / 1000 if at.baseline.tpot_p99 else None
        t = Threshold(model=model, break_even=be, tpot_p99_s=p99,
                      source=f"measured by experiment {findings.experiment!r}: {f.candidate} on {f.workload} at "
                             f"{findings.load_unit} {load:g}")
        old = best.get(model)
        if old is None or (t.break_even, -(t.tpot_p99_s or 0)) > (old.break_even, -(old.tpot_p99_s or 0)):
            best[model] = t
    return [*best.values(), Threshold(model=None, break_even=GUIDE.break_even, source=GUIDE.source,
                                      others=tuple(sorted(best)))]


GUIDE = Threshold(model=None, break_even=ACCEPT_OFF, source=f"the guide's rule of thumb ({ACCEPT_OFF}); measure this "
                  "deployment's with `specwise run` and `specwise rules --from EXP_DIR`")


def _rate(name: str, span: str, by: str = BY) -> str:
    return f"sum by ({by}) (rate({name}[{span}]))"


def recording_rules(k: int | None = None) -> list[dict[str, str]]:
    rules = []
    for span in SPANS:
        v1_length = f"1 + {_rate(ACCEPTED, span)} / ({_rate(DRAFTS, span)} > 0)"
        # V0 has no drafts counter: a draft is k drafted tokens, and emitted tokens include the bonus one.
        v0_length = (f" or ({_rate(V0_EMITTED, span)} / ({_rate(DRAFT_TOKENS, span)} > 0) * {k})" if k else "")
        rules += [
            {"record": series("acceptance_rate", span),
             "expr": f"{_rate(ACCEPTED, span)} / ({_rate(DRAFT_TOKENS, span)} > 0)"},
            {"record": series("acceptance_length", span), "expr": f"({v1_length}){v0_length}"},
            {"record": series("position_acceptance", span),
             "expr": f"{_rate(ACCEPTED_PER_POS, span, BY + ', position')} / on ({BY}) group_left() "
                     f"({_rate(DRAFTS, span)} > 0)"},
        ]
    rules += [
        {"record": series("drafts_per_second", "5m"), "expr": _rate(DRAFTS, "5m")},
        {"record": series("draft_tokens_per_second", "5m"), "expr": _rate(DRAFT_TOKENS, "5m")},
        {"record": series("accepted_tokens_per_second", "5m"), "expr": _rate(ACCEPTED, "5m")},
    ]
    return rules


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _regex(names: Sequence[str]) -> str:
    return _quoted("|".join(re.escape(n) for n in names))


def _selector(model: str | None, others: Sequence[str] = ()) -> str:
    if model is not None:
        return "{model_name=" + _quoted(model) + "}"
    return "{model_name!~" + _regex(others) + "}" if others else ""


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, runbook: str,
           threshold: Threshold | None = None) -> dict[str, Any]:
    labels = {"severity": severity}
    if threshold is not None:   # one alert per threshold: the label tells them apart (and Prometheus wants it)
        labels["threshold_for"] = threshold.model or ("other models" if threshold.others else "all models")
    return {"alert": name, "expr": expr, "for": for_, "labels": labels,
            "annotations": {"summary": summary, "runbook": runbook}}


def break_even_alert(t: Threshold) -> dict[str, Any]:
    rate = series("acceptance_rate", "5m") + _selector(t.model, t.others)
    return _alert(
        "SpecDecodeAcceptanceBelowBreakEven", f"{rate} < {t.break_even:.4g}", "10m", "critical",
        "{{ $labels.model_name }} on {{ $labels.instance }}: acceptance {{ $value | printf \"%.2f\" }} is below "
        f"break-even {t.break_even:.2f} ({t.source})",
        "Speculation now costs more than it saves: turn it off (drop --speculative-config) or lower its batch "
        "limit (num_speculative_tokens_per_batch_size); check the traffic's temperatures and that the draft "
        "still matches the target.", t)


def tpot_alert(t: Threshold) -> dict[str, Any] | None:
    if t.tpot_p99_s is None:
        return None
    quantiles = " or ".join(
        f"histogram_quantile(0.99, sum by (le, {BY}) (rate({h}_bucket{_selector(t.model, t.others)}[5m])))"
        for h in TPOT_HISTOGRAMS)
    return _alert(
        "SpecDecodeP99TpotAboveBaseline", f"({quantiles}) > {t.tpot_p99_s:.6g}", "10m", "warning",
        "{{ $labels.model_name }} on {{ $labels.instance }}: P99 TPOT {{ $value | printf \"%.3f\" }} s is above "
        f"the baseline's {1000 * t.tpot_p99_s:.1f} ms ({t.source})",
        "The load is past where speculation pays: lower the batch limit or turn speculation off above it; "
        "compare with `specwise run` at today's load.", t)


def generic_alerts() -> list[dict[str, Any]]:
    length, length_24h = series("acceptance_length", "1h"), series("acceptance_length", "24h")
    pos, pos_24h = series("position_acceptance", "5m"), series("position_acceptance", "24h")
    kv = " or ".join(f"max by ({BY}) ({name})" for name in KV_USAGE)
    return [
        _alert("SpecDecodeAcceptanceLengthRegression", f"{length} < {LENGTH_REGRESSION} * {length_24h}", "30m",
               "warning",
               "{{ $labels.model_name }} on {{ $labels.instance }}: mean acceptance length {{ $value | printf "
               f"\"%.2f\" }}}} over 1 h is more than {100 * (1 - LENGTH_REGRESSION):.0f} % below its 24 h level",
               "The traffic or the draft changed: check recent deploys (draft or target version, quantization, "
               "sampling parameters) and the temperature mix; if it persists, re-run `specwise run` and "
               "reconsider k."),
        _alert("SpecDecodePositionCollapse",
               f"(min by ({BY}) ({pos}) < {POSITION_NEAR_ZERO}) and on ({BY}) "
               f"(max by ({BY}) ({pos}{{position=\"0\"}}) < {FIRST_POSITION_DROP} * "
               f"max by ({BY}) ({pos_24h}{{position=\"0\"}}))", "5m", "critical",
               "{{ $labels.model_name }} on {{ $labels.instance }}: acceptance collapsed at every draft position "
               "(first position below half its 24 h level, last near zero)",
               "Draft and target disagree on nearly every token: outputs may be corrupted (a broken deployment, "
               "mismatched tokenizer or weights). Turn speculation off now, then check the draft."),
        _alert("SpecDecodeKVCachePressure",
               f"(({kv}) > {KV_FULL}) and on ({BY}) ({_rate(PREEMPTIONS, '5m')} > 0)", "5m", "warning",
               "{{ $labels.model_name }} on {{ $labels.instance }}: KV cache over "
               f"{100 * KV_FULL:.0f} % and requests preempted",
               "The draft's weights and KV cache squeeze the target's: lower the batch limit or k, or give the "
               "server more memory; preemptions cost more than speculation saves."),
    ]


def rule_groups(thresholds: Sequence[Threshold] = (GUIDE,), k: int | None = None) -> dict[str, Any]:
    """The whole rules file: recording rules, then the alerts (per threshold, then the generic ones)."""
    alerts = [break_even_alert(t) for t in thresholds]
    alerts += [a for a in (tpot_alert(t) for t in thresholds) if a is not None]
    return {"groups": [{"name": "specwise-spec-decode-recording", "rules": recording_rules(k)},
                       {"name": "specwise-spec-decode-alerts", "rules": alerts + generic_alerts()}]}
