"""Pure parts of the load generator, metrics windows and statistics."""

from __future__ import annotations

import collections
import itertools
import statistics

import pytest

from specwise.errors import SpecwiseError
from specwise.load import per_request_acceptance
from specwise.metrics import increase, snapshot, window
from specwise.workload import LoadShape, arrival_offsets, load_dataset, parse_temperature_mix, request_plan
from specwise.results import Manifest, RequestRecord, Run
from specwise.analysis import bootstrap_percentiles
from specwise.analysis import summarize


def test_temperature_mix_is_normalized_and_checked():
    assert parse_temperature_mix("0.1:60,1.0:40") == ((0.1, 0.6), (1.0, 0.4))
    assert parse_temperature_mix("0.7") == ((0.7, 1.0),)
    for bad in ("hot", "0.5:-1", "-1:1", ""):
        with pytest.raises(SpecwiseError, match="--temperatures"):
            parse_temperature_mix(bad)


def test_request_plan_is_reproducible_and_follows_the_mix():
    prompts = load_dataset("open")
    mix = parse_temperature_mix("0:70,1:30")
    first = list(itertools.islice(request_plan(prompts, mix, seed=7, warmup=3), 2000))
    again = list(itertools.islice(request_plan(prompts, mix, seed=7, warmup=3), 2000))
    other = list(itertools.islice(request_plan(prompts, mix, seed=8, warmup=3), 2000))
    assert first == again and first != other
    assert [p.warmup for p in first[:4]] == [True, True, True, False]
    # Stratified: every prefix holds each temperature within one request of its share (a draw would stray).
    for n in range(1, len(first) + 1):
        assert abs(sum(p.temperature == 0 for p in first[:n]) - 0.7 * n) < 1
    thirds = list(itertools.islice(request_plan(prompts, parse_temperature_mix("0:1,0.5:1,1:1"), seed=3), 16))
    assert sorted(collections.Counter(p.temperature for p in thirds).values()) == [5, 5, 6]
    # ...but not a fixed cycle: ties are drawn, so the order differs by seed.
    assert [p.temperature for p in thirds] != [p.temperature for p in
                                              itertools.islice(request_plan(prompts, parse_temperature_mix(
                                                  "0:1,0.5:1,1:1"), seed=4), 16)]
    # Every prompt is used once per pass over the set.
    assert {p.prompt.id for p in first[:len(prompts)]} == {p.id for p in prompts}


@pytest.mark.parametrize("burstiness", [0.5, 1.0, 4.0])
def test_poisson_arrivals_have_the_asked_rate_and_burstiness(burstiness):
    times = list(itertools.islice(arrival_offsets(5.0, "poisson", burstiness, seed=1), 20001))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert statistics.fmean(gaps) == pytest.approx(0.2, rel=0.05)
    # Gamma gaps: coefficient of variation 1/sqrt(shape).
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(burstiness ** -0.5, rel=0.08)


def test_constant_arrivals():
    assert list(itertools.islice(arrival_offsets(4.0, "constant", 1.0, 0), 3)) == [0.0, 0.25, 0.5]


def test_load_shape_rejects_impossible_input():
    with pytest.raises(SpecwiseError, match="--rate"):
        LoadShape(rate=-1, requests=1).validate()
    with pytest.raises(SpecwiseError, match="exactly one"):
        LoadShape(rate=1, concurrency=1, requests=1).validate()


def test_per_request_acceptance_sources():
    spec = {"num_draft_tokens": 40, "num_accepted_draft_tokens": 30, "draft_acceptance_rate": 0.75}
    assert per_request_acceptance([1, 5, 5], spec, 4) == (0.75, "server", 0)
    # Chunks after the first are verify steps: (mean tokens − 1) / k.
    assert per_request_acceptance([1, 5, 3, 1], None, 4) == ((9 / 3 - 1) / 4, "chunks", 0)
    # A chunk of 9 tokens cannot be one step at k=4: merged, no estimate.
    assert per_request_acceptance([1, 9, 2], None, 4) == (None, "none", 1)
    assert per_request_acceptance([1, 2], None, None) == (None, "none", 0)


def test_counter_increase_survives_a_restart():
    assert increase([10, 15, 20]) == 10
    # The server restarted between 20 and 3: 10 before, 3 after.
    assert increase([10, 20, 3, 8]) == 10 + 3 + 5


METRICS = """# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} %d
# TYPE vllm:spec_decode_num_draft_tokens counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} %d
# TYPE vllm:spec_decode_num_accepted_tokens counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} %d
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} %f
# TYPE vllm:spec_decode_draft_acceptance_rate gauge
vllm:spec_decode_draft_acceptance_rate 0.5
"""


def test_window_over_scrapes():
    snaps = [snapshot(METRICS % (10, 40, 20, 0.1)), snapshot(METRICS % (20, 80, 50, 0.5)),
             snapshot(METRICS % (30, 120, 70, 0.3))]
    values = window(snaps)
    assert values["vllm:spec_decode_num_draft_tokens_total"] == 80
    assert values["vllm:spec_decode_num_accepted_tokens_total"] == 50
    assert values["vllm:kv_cache_usage_perc"] == pytest.approx(0.3)
    assert values["max:vllm:kv_cache_usage_perc"] == pytest.approx(0.5)
    assert values["vllm:spec_decode_draft_acceptance_rate"] == 0.5  # the V0 gauge is read too


def test_bootstrap_interval_brackets_the_estimate():
    data = [float(i % 97) for i in range(500)]
    est = bootstrap_percentiles(data, [50.0, 99.0], seed=1)
    for q in (50.0, 99.0):
        assert est[q].low <= est[q].value <= est[q].high
    assert est[50.0].high - est[50.0].low < 20


def _record(i: int, temp: float, chunks: list[int], warmup: bool = False, error: str | None = None) -> RequestRecord:
    times = [1.0 + 0.1 * j for j in range(len(chunks))]
    return RequestRecord(index=i, warmup=warmup, prompt_id="p", temperature=temp, scheduled_s=0.9, sent_s=1.0 - 0.0,
                         end_s=times[-1] + 0.01, chunk_s=times, chunk_tokens=chunks, error=error,
                         acceptance=per_request_acceptance(chunks, None, 4)[0], acceptance_source="chunks")


def test_summary_from_records():
    records = [_record(0, 0.0, [1, 5], warmup=True)] + \
              [_record(i, 0.0, [1, 5, 5, 5]) for i in range(1, 5)] + \
              [_record(i, 1.0, [1, 1, 2, 1]) for i in range(5, 9)] + [_record(9, 1.0, [1], error="timeout")]
    manifest = Manifest(specwise_version="t", started_at="t", url="u", api="completions", model="m", seed=0,
                        config={"k": 4}, hardware={})
    summary = summarize(Run(directory=".", manifest=manifest, requests=records, samples=[]), slo_ms={"tpot": 30})
    assert summary.requests == 9 and summary.ok == 8 and summary.warmup == 1 and summary.errors == {"timeout": 1}
    # TPOT: 0.3 s over 16 - 1 tokens (T=0: 20 ms) or 5 - 1 tokens (T=1: 75 ms); four of each.
    assert summary.tpot_ms.p50.value == pytest.approx((20 + 75) / 2)
    assert summary.ttft_ms.p99.value == pytest.approx(0.0, abs=1e-9)
    buckets = {b.temperature: b for b in summary.acceptance.buckets}
    assert buckets[0.0].pooled == 1.0 and buckets[0.0].p50 == 1.0
    assert buckets[1.0].pooled == pytest.approx(1 / 12)
    assert summary.goodput.requests == 4 and summary.goodput.fraction == pytest.approx(4 / 9)
