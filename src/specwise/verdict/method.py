"""Which speculative method a traffic profile calls for — n-gram, a draft model, or none — per traffic class,
with the guide's reasons. A prior to test, never a verdict: the experiment `specwise analyze` emits measures
it. Pure."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel

from specwise.thresholds import NGRAM_OVERLAP, STRUCTURED_SHARE, TEMP_GOOD, TEMP_OFF, TEMP_SPREAD
from specwise.workload.traffic import ClassProfile, TrafficProfile

MIN_CLASS_SHARE = 0.05   # a class under this share of traffic is reported, but does not split the deployment


class Method(str, Enum):
    NGRAM = "ngram"
    DRAFT = "draft"
    NONE = "none"


class ClassAdvice(BaseModel):
    name: str
    share: float
    method: Method
    reasons: list[str]


class MeasurementPlan(BaseModel):
    """What to measure: production's temperature mix, its loads, its output lengths."""

    temperatures: str | None
    load_unit: str                  # "rate" (from the log's send times) or "concurrency" (none in the log)
    levels: list[float]
    output_tokens_p50: float | None


class Recommendation(BaseModel):
    method: Method
    headline: str
    reasons: list[str]
    classes: list[ClassAdvice]
    separate_deployments: bool
    test: MeasurementPlan | None = None


# Without send times in the log, the closed-loop sweep that shows low load and where the gain ends.
DEFAULT_CONCURRENCY = [1.0, 4.0, 16.0]


def load_levels(mean_rate: float | None, peak_rate: float | None) -> tuple[str, list[float]]:
    """The log's mean rate, its peak and halfway between (rounded to 3 figures); a concurrency sweep without."""
    if mean_rate is None or peak_rate is None:
        return "concurrency", DEFAULT_CONCURRENCY
    return "rate", sorted({float(f"{r:.3g}") for r in (mean_rate, (mean_rate + peak_rate) / 2, peak_rate)})


def measurement_plan(profile: TrafficProfile) -> MeasurementPlan:
    a = profile.arrivals
    unit, levels = load_levels(a.mean_rate if a else None, a.peak_rate if a else None)
    out = profile.output_tokens or None
    return MeasurementPlan(temperatures=profile.temperature.mix_text if profile.temperature else None, load_unit=unit,
                    levels=levels, output_tokens_p50=out.p50 if out else None)


def advise_class(c: ClassProfile) -> ClassAdvice:
    t, reasons = c.temperature, []
    echo = c.overlap.p50 if c.overlap else None
    if t.median > TEMP_OFF:
        method = Method.NONE
        reasons.append(f"median temperature {t.median:g} > {TEMP_OFF:g}: sampling this flat accepts few drafted "
                       "tokens, so drafting and verifying is mostly overhead (guide: leave off)")
    elif echo is not None and echo >= NGRAM_OVERLAP:
        method = Method.NGRAM
        reasons.append(f"outputs echo their prompts (median {echo:.0%} of output 3-grams are in the prompt ≥ "
                       f"{NGRAM_OVERLAP:.0%}): prompt lookup proposes them for free, no draft weights in memory")
    else:
        method = Method.DRAFT
        if echo is not None:
            reasons.append(f"outputs rarely echo their prompts (median overlap {echo:.0%} < {NGRAM_OVERLAP:.0%}): "
                           "n-gram lookup would find little to propose; a draft model works for any prompt")
        if t.median <= TEMP_GOOD:
            reasons.append(f"median temperature {t.median:g} ≤ {TEMP_GOOD:g}: the target's distribution is peaked "
                           "enough for a draft to agree with it often")
        else:
            reasons.append(f"median temperature {t.median:g} is in the break-even band ({TEMP_GOOD:g}–{TEMP_OFF:g}): "
                           "whether a draft pays is for the measurement to say, on P99 under real load")
        if c.structured_share is not None and c.structured_share >= STRUCTURED_SHARE:
            reasons.append(f"{c.structured_share:.0%} structured output (JSON, code): the guide's good fit")
    return ClassAdvice(name=c.name, share=c.share, method=method, reasons=reasons)


def recommend(profile: TrafficProfile) -> Recommendation:
    return _recommend(profile).model_copy(update={"test": measurement_plan(profile)})


def _recommend(profile: TrafficProfile) -> Recommendation:
    classes = [advise_class(c) for c in profile.classes]
    main = [c for c in classes if c.share >= MIN_CLASS_SHARE] or classes
    methods = {c.method for c in main}
    reasons: list[str] = []
    temp = profile.temperature
    if temp is not None:
        if temp.homogeneity < 1 - MIN_CLASS_SHARE:
            reasons.append(f"temperatures are mixed: only {temp.homogeneity:.0%} of requests lie within one "
                           f"{TEMP_SPREAD:g}-wide band; in one batch the low-acceptance requests add tail latency "
                           "for everyone (guide: homogeneity)")
        if temp.unset:
            reasons.append(f"{temp.unset} request(s) set no temperature: counted at the API default 1.0")
    if profile.latency is not None and profile.latency.dominated_by == "ttft":
        reasons.append(f"latency is TTFT-bound (median {profile.latency.ttft_share.p50:.0%} of a request's time is "
                       "before its first token): speculation shortens only the time after it")
    if not main:
        return Recommendation(method=Method.NONE, headline="no requests to judge", reasons=reasons, classes=classes,
                              separate_deployments=False)
    if len(methods) == 1:
        method = methods.pop()
        headline = {Method.NGRAM: "try n-gram speculation", Method.DRAFT: "try a draft model",
                    Method.NONE: "leave speculation off"}[method]
        return Recommendation(method=method, headline=headline, reasons=main[0].reasons + reasons, classes=classes,
                              separate_deployments=False)
    # Classes that want different things: the guide's answer is a deployment per class.
    speculating = [c for c in main if c.method is not Method.NONE]
    best = max(speculating, key=lambda c: c.share) if speculating else main[0]
    routes = "; ".join(f"{c.name} ({c.share:.0%}) → {c.method.value}" for c in main)
    return Recommendation(method=best.method, headline=f"split the traffic: {routes}",
                          reasons=[f"the traffic splits into classes that want different methods: {routes} — route "
                                   "each to its own deployment (guide: separate deployments for mixed traffic)",
                                   *reasons], classes=classes, separate_deployments=True)
