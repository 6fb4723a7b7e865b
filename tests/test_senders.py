"""The load generator at scale: one schedule dealt out to senders (worker processes), and a generator that
says when it is the bottleneck instead of reporting its own limit as the server's latency."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from faultserver import FaultServer
from test_bench_faults import dataset
from typer.testing import CliRunner

from specwise.analysis import summarize
from specwise.cli import app
from specwise.load import BenchConfig, Gauge, execute_bench
from specwise.load.driver import TICK_S, BusyClock
from specwise.results import RequestRecord, load_run
from specwise.thresholds import CLIENT_BUSY_WINDOW_S, SEND_LAG_BOUND_S
from specwise.workload import LoadShape, Share, arrival_offsets, load_dataset, parse_temperature_mix, request_plan


def _plan(seed: int = 3):
    return request_plan(load_dataset("mixed"), parse_temperature_mix("0:1,0.5:1,1.0:1"), seed, warmup=5)


@pytest.mark.parametrize("senders", [1, 2, 3, 7])
def test_shares_deal_out_the_one_schedule(senders):
    """Whatever the number of senders, their shares together are the run's one sequence: every warm-up and
    measured request once, with the prompt, temperature, seed and send time a single sender would give it."""
    whole = list(itertools.islice(_plan(), 5 + 40))
    times = list(itertools.islice(arrival_offsets(50, "poisson", 1.0, 3), 40))
    warm, measured, offsets = [], [], []
    for i in range(senders):
        share, plan = Share(i, senders), _plan()
        warm += share.warmup(plan, 5)
        measured += list(itertools.islice(share.measured(plan), share.shape(LoadShape(rate=50, requests=40)).requests))
        offsets += list(itertools.islice(share.offsets(arrival_offsets(50, "poisson", 1.0, 3)),
                                         len(range(i, 40, senders))))
    assert sorted(warm + measured, key=lambda p: p.index) == whole
    assert all(p.warmup for p in warm) and not any(p.warmup for p in measured)
    assert sorted(offsets) == sorted(times)


def test_shares_of_a_load_add_up_to_it():
    shape = LoadShape(concurrency=10, requests=101, max_in_flight=None)
    parts = [Share(i, 3).shape(shape) for i in range(3)]
    assert sum(p.concurrency for p in parts) == 10 and sum(p.requests for p in parts) == 101
    capped = [Share(i, 4).shape(LoadShape(rate=100, requests=8, max_in_flight=6)) for i in range(4)]
    assert [p.max_in_flight for p in capped] == [2, 2, 1, 1] and all(p.rate == 100 for p in capped)


def _record(sent: float, scheduled: float, end: float) -> RequestRecord:
    return RequestRecord(index=0, prompt_id="p", temperature=0, scheduled_s=scheduled, sent_s=sent, end_s=end)


def _block_the_loop(count_busy: bool = False) -> Gauge:
    """A sender whose loop is blocked by CPU work for 2.5 windows, between idle stretches; `count_busy`: the
    gauge's busy clock counts exactly the time spent in that work (else it reads the machine's schedstat)."""
    spun = [0.0]

    async def go() -> Gauge:
        gauge = Gauge(time.perf_counter(), (lambda: spun[0]) if count_busy else None)
        task = asyncio.create_task(gauge.run())
        await asyncio.sleep(3 * CLIENT_BUSY_WINDOW_S)          # idle: nothing saturated
        start = time.perf_counter()
        while time.perf_counter() < start + 2.5 * CLIENT_BUSY_WINDOW_S:   # the loop is blocked: CPU bound
            pass
        spun[0] += time.perf_counter() - start
        await asyncio.sleep(2 * CLIENT_BUSY_WINDOW_S)
        task.cancel()
        return gauge

    return asyncio.run(go())


BLOCKED_AT = 3 * CLIENT_BUSY_WINDOW_S


def test_the_gauge_sees_a_stalled_loop_and_marks_what_it_touched():
    """The stall is as long as the block, and a request in flight then is marked; one before it is not. Whether
    the loop also counts as busy is the machine's to say (a VM's stolen time is neither running nor waiting in
    schedstat): the stall is marked whatever kept the loop."""
    gauge = _block_the_loop()
    during = gauge.mark(_record(BLOCKED_AT + 0.1, BLOCKED_AT + 0.1, BLOCKED_AT + 0.2), capped=False)
    before = gauge.mark(_record(0.2, 0.2, 0.4), capped=False)
    assert "loop_stalled" in during.client_bound and during.client_stall_ms >= 2 * CLIENT_BUSY_WINDOW_S * 1e3
    assert before.client_bound == [] and before.client_stall_ms < 100
    stats = gauge.stats()
    assert stats["stalled_intervals"] >= 1 and stats["busy_share"]["max"] > 0.5
    assert stats["stall_ms"]["max"] >= 2 * CLIENT_BUSY_WINDOW_S * 1e3 and stats["stall_ms"]["p50"] < 50 * TICK_S * 1e3


def test_a_loop_busy_through_its_stall_is_saturated():
    """Busy through the stall (the thread ran or waited for a core throughout): CPU saturation too, and only the
    request in flight then is marked so."""
    gauge = _block_the_loop(count_busy=True)
    during = gauge.mark(_record(BLOCKED_AT + 0.1, BLOCKED_AT + 0.1, BLOCKED_AT + 0.2), capped=False)
    before = gauge.mark(_record(0.2, 0.2, 0.4), capped=False)
    assert set(during.client_bound) == {"cpu_saturated", "loop_stalled"} and before.client_bound == []
    assert gauge.stats()["saturated_intervals"] >= 1


def test_the_busy_clock_counts_a_spinning_thread():
    clock = BusyClock()
    try:
        wall, busy = time.perf_counter(), clock()
        while time.perf_counter() < wall + 0.3:
            pass
        # Running or waiting for a core: near 1 on a quiet machine; time the machine was not given is missing.
        assert (clock() - busy) / (time.perf_counter() - wall) > 0.5
    finally:
        clock.close()


def test_the_gauge_marks_late_sends_and_capped_ones():
    gauge = Gauge(time.perf_counter())
    assert gauge.mark(_record(1.0 + 2 * SEND_LAG_BOUND_S, 1.0, 1.5), capped=False).client_bound == ["send_lag"]
    assert gauge.mark(_record(1.0 + SEND_LAG_BOUND_S / 2, 1.0, 1.5), capped=False).client_bound == []
    assert gauge.mark(_record(1.0, 1.0, 1.5), capped=True).client_bound == ["in_flight_cap"]


def test_workers_send_the_same_schedule_as_one_process(tmp_path):
    """An open-loop run from 2 worker processes: every request once, from both senders, each with the prompt,
    temperature and send time of the same run from one process; both on one clock (sends on time)."""
    runs = {}
    with FaultServer(tokens=8, chunk=2, gap_s=0.002) as server:
        for workers in (1, 2):
            out = tmp_path / f"w{workers}"
            execute_bench(BenchConfig(url=server.url, rate=40, requests=60, warmup=4, max_tokens=8, workers=workers,
                                      temperatures="0:1,1.0:1", dataset="mixed", seed=5), out)
            runs[workers] = {r.index: r for r in load_run(out).requests}
    one, two = runs[1], runs[2]
    assert sorted(one) == sorted(two) == list(range(64))
    assert {r.sender for r in two.values()} == {0, 1}
    for i, r in two.items():
        assert (r.prompt_id, r.temperature, r.warmup) == (one[i].prompt_id, one[i].temperature, one[i].warmup)
        if not r.warmup:
            assert r.scheduled_s - two[4].scheduled_s == pytest.approx(one[i].scheduled_s - one[4].scheduled_s)
            assert r.ok and r.sent_s <= r.chunk_s[0] <= r.end_s
    # One clock: a sender whose clock were off would send "late" or "early" by the offset.
    lags = sorted(r.send_lag_s for r in two.values() if not r.warmup)
    assert lags[0] >= 0 and lags[len(lags) // 2] < SEND_LAG_BOUND_S


def test_workers_keep_a_duration_bound_open_loop(tmp_path):
    """Bounded by time, not a count: each of 2 worker processes sends its share until the duration is up."""
    with FaultServer(tokens=4, chunk=2, gap_s=0.001) as server:
        execute_bench(BenchConfig(url=server.url, rate=40, duration_s=1.0, max_tokens=4, workers=2,
                                  dataset=dataset(tmp_path, ["ok"])), tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.manifest.complete and {r.sender for r in run.requests} == {0, 1}
    indices = sorted(r.index for r in run.requests)
    # Each sender stops at the deadline on its own: the last index of one may be missing, no more.
    assert 20 <= len(indices) <= 70 and len(set(indices)) == len(indices) and indices[-1] <= len(indices)


def test_a_rate_beyond_reach_is_generator_bound_not_server_latency(tmp_path):
    """One process asked for 5 000 requests/s against a server in the same process: it cannot keep up, and the
    run says so — no latency reported as the server's, the terminal names it and tells what to do."""
    with FaultServer(tokens=4, chunk=1, gap_s=0.0) as server:
        result = CliRunner().invoke(app, ["bench", "--url", server.url, "--rate", "5000", "--requests", "1500",
                                          "--max-tokens", "4", "--dataset", dataset(tmp_path, ["ok"]),
                                          "--out", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "GENERATOR-BOUND" in result.output and "--workers" in result.output
    summary = summarize(load_run(tmp_path / "run"))
    assert summary.generator.bound and summary.generator.reasons.get("send_lag", 0) > 15
    assert summary.ttft_ms is None and summary.tpot_ms is None and summary.e2e_ms is None
    stored = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert stored["generator"]["bound"] is True and stored["ttft_ms"] is None


def test_a_load_within_reach_is_not_generator_bound(tmp_path):
    """The same server at 20 requests/s: nothing marked, latencies reported (the check above can fail)."""
    with FaultServer(tokens=4, chunk=1, gap_s=0.0) as server:
        execute_bench(BenchConfig(url=server.url, rate=20, requests=40, max_tokens=4,
                                  dataset=dataset(tmp_path, ["ok"])), tmp_path / "run")
    summary = summarize(load_run(tmp_path / "run"))
    assert not summary.generator.bound and summary.ttft_ms is not None and summary.generator.stall_ms_p99 is not None


def test_closed_loop_at_concurrency_1024_records_every_request(tmp_path):
    """1 024 requests in flight from 2 worker processes: every request ends in a record (ok here: the server
    keeps up)."""
    with FaultServer(tokens=4, chunk=2, gap_s=0.001, backlog=2048) as server:
        execute_bench(BenchConfig(url=server.url, concurrency=1024, requests=2048, max_tokens=4, workers=2,
                                  dataset=dataset(tmp_path, ["ok"]), request_timeout_s=120), tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert sorted(r.index for r in run.requests) == list(range(2048))
    assert run.manifest.complete and all(r.ok for r in run.requests), {r.error for r in run.requests}
