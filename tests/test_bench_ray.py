"""`specwise bench --ray ADDRESS`: the senders as Ray actors on a local Ray cluster started here (a head on this
machine, three CPUs). One run directory whose summary matches a single-process run of the same schedule;
records from every actor, on one clock — even when the actors' clocks are shifted by minutes, as on other
machines; an unreachable cluster is one line, at once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultserver import FaultServer
from typer.testing import CliRunner

from specwise.analysis import summarize
from specwise.cli import app
from specwise.errors import SpecwiseError
from specwise.load import BenchConfig, execute_bench
from specwise.results import RequestRecord, load_run

# Each actor's clock shifted by this (s), as if it ran on another machine: the run must not see it.
SKEWS = (0.0, 1234.5, -321.0)
SCHEDULE = dict(rate=50, arrivals="poisson", requests=200, warmup=4, seed=7, max_tokens=8, scrape_interval_s=0.5)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A Ray head on this machine with 3 CPUs, in its own temp dir and process group; every process it started
    (GCS, raylet, workers) is killed at the end, and no other Ray on the machine is touched (`ray stop` would
    stop them all)."""
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="swray-")   # short: Ray's socket paths must fit in 107 bytes
    gcs, client, dash, agent, agent_grpc, env_agent, metrics = free_ports(7)
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
               "--port", str(gcs), "--ray-client-server-port", str(client), "--dashboard-port", str(dash),
               "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--runtime-env-agent-port", str(env_agent), "--metrics-export-port", str(metrics),
               "--num-cpus", "3", "--include-dashboard=false", "--include-log-monitor=false",
               "--disable-usage-stats", "--temp-dir", temp]
    log = Path(temp) / "start.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with log.open("wb") as out:
        # Its own session: the daemons it leaves running stay in its process group, which is what is killed.
        starter = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        if starter.wait(timeout=120) != 0:
            pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
        yield f"127.0.0.1:{gcs}"
    finally:
        for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):   # the GCS may ignore SIGTERM
            if not group_alive(starter.pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(starter.pid, sig)
            deadline = time.monotonic() + wait_s
            while group_alive(starter.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        starter.poll()
        assert not group_alive(starter.pid), "the local Ray cluster's processes outlived the tests"
        shutil.rmtree(temp, ignore_errors=True)


def p50_ms(summary_figure, records: list[RequestRecord], attr: str) -> float:
    """The summary's P50 when it reports one; a generator-bound run (on this 2-core machine, under the suite's
    own load, a few of the actors' requests may be marked) reports none, and then the P50 is taken over the very
    requests it would time: the successful ones not marked client-bound."""
    if summary_figure is not None:
        return summary_figure.p50.value
    return 1e3 * statistics.median(getattr(r, attr) for r in records if r.ok and not r.client_bound)


@pytest.mark.slow
@pytest.mark.timeout(300)   # a wrong clock correction would make an actor wait for its skew (minutes)
def test_a_ray_run_is_the_local_run_of_the_same_schedule_on_one_clock(ray_cluster, tmp_path, monkeypatch):
    from specwise.load.ray import RaySenders

    monkeypatch.setattr(RaySenders, "clock_skew_s", SKEWS)
    received: dict[tuple[int, bool], float] = {}   # when each record reached this process (its perf_counter)
    started: list[float] = []
    with FaultServer(tokens=8, chunk=2, gap_s=0.02) as server:
        t = time.perf_counter()
        execute_bench(BenchConfig(url=server.url, workers=1, **SCHEDULE), tmp_path / "local")
        local_s = time.perf_counter() - t
        t = time.perf_counter()
        execute_bench(BenchConfig(url=server.url, workers=3, ray=ray_cluster, **SCHEDULE), tmp_path / "ray",
                      on_record=lambda r: received.__setitem__((r.index, r.warmup), time.perf_counter()),
                      on_start=lambda m: started.append(time.perf_counter()))
        ray_s = time.perf_counter() - t
    print(f"local run {local_s:.1f} s, Ray run {ray_s:.1f} s")
    local, remote = load_run(tmp_path / "local"), load_run(tmp_path / "ray")
    assert local.manifest.complete and remote.manifest.complete and remote.manifest.stop_reason == "done"

    # Every request once, the same request at each index, sent by the actor its index deals it to.
    lreq = {(r.index, r.warmup): r for r in local.requests}
    rreq = {(r.index, r.warmup): r for r in remote.requests}
    assert len(rreq) == len(remote.requests) == len(local.requests) == 204 and rreq.keys() == lreq.keys()
    assert [(r.prompt_id, r.temperature) for _, r in sorted(rreq.items())] == \
        [(r.prompt_id, r.temperature) for _, r in sorted(lreq.items())]
    measured = sorted((r for r in remote.requests if not r.warmup), key=lambda r: r.index)
    assert [r.sender for r in measured] == [i % 3 for i in range(200)]
    assert {r.sender for r in remote.requests if r.warmup} == {0, 1, 2}

    # The same schedule: each send time the same offset from the run's first.
    def schedule(run) -> dict[int, float]:
        times = {r.index: r.scheduled_s for r in run.requests if not r.warmup}
        first = min(times.values())
        return {i: s - first for i, s in times.items()}

    lsched, rsched = schedule(local), schedule(remote)
    assert all(abs(rsched[i] - lsched[i]) < 1e-6 for i in lsched)

    # One clock. Sends keep the schedule: an actor whose clock were taken for ours would be off by its skew.
    lags = sorted(r.sent_s - r.scheduled_s for r in measured)
    assert lags[0] >= -1e-6 and lags[len(lags) // 2] < 0.002 and lags[int(0.99 * len(lags))] < 0.02, lags[-5:]
    # And each record ended, on the run's clock, before this process received it, by at most a few drains: the
    # run's zero is a little after on_start.
    for key, record in rreq.items():
        delivered = received[key] - started[0] - record.end_s
        assert 0 <= delivered < 3.0, (key, record.sender, delivered)
        assert record.ok and record.chunk_s == sorted(record.chunk_s)
        assert record.sent_s <= record.chunk_s[0] <= record.end_s

    # Each actor's measured offset is its skew, within half its best round trip.
    senders = remote.manifest.senders
    assert [s["sender"] for s in senders] == [0, 1, 2]
    for s, skew in zip(senders, SKEWS):
        assert 0 < s["clock_rtt_s"] < 0.1 and abs(s["clock_offset_s"] - skew) <= s["clock_rtt_s"] / 2 + 1e-4, s
        assert abs(s["clock_drift_s"]) < 0.01 and s["ray_node_ip"] and s["host"], s

    # The summaries agree within noise: same counts and throughput, TTFT and TPOT medians close.
    ls, rs = summarize(local), summarize(remote)
    assert (rs.requests, rs.ok, rs.errors, rs.generator.senders) == (200, 200, {}, 3)
    assert (ls.requests, ls.ok) == (200, 200)
    assert abs(rs.request_throughput_rps - ls.request_throughput_rps) <= 0.1 * ls.request_throughput_rps
    lmeasured = [r for r in local.requests if not r.warmup]
    for name, attr in (("ttft_ms", "ttft_s"), ("tpot_ms", "tpot_s")):
        a, b = p50_ms(getattr(ls, name), lmeasured, attr), p50_ms(getattr(rs, name), measured, attr)
        print(f"{name} P50: local {a:.2f}, Ray {b:.2f} (from the summaries: {getattr(ls, name) is not None}, "
              f"{getattr(rs, name) is not None})")
        assert abs(a - b) <= max(0.5 * a, 5.0), (name, a, b)


@pytest.mark.parametrize("address", ["127.0.0.1:9", "ray://127.0.0.1:9"])
def test_an_unreachable_ray_cluster_is_one_line_at_once(tmp_path, address):
    pytest.importorskip("ray")
    with FaultServer() as server:
        t = time.monotonic()
        result = CliRunner().invoke(app, ["bench", "--url", server.url, "--rate", "10", "--requests", "3",
                                          "--workers", "2", "--ray", address, "--out", str(tmp_path / "run")])
        took = time.monotonic() - t
    # Checked before the run begins: one line, no run directory left behind.
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: --ray: cannot reach the Ray cluster at {address} (")
    assert not (tmp_path / "run").exists()
    assert took < 20


def test_without_ray_installed_the_flag_says_how_to_install_it(monkeypatch):
    from specwise.load.ray import RaySenders

    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` raises ImportError
    with pytest.raises(SpecwiseError, match=r"--ray: Ray is not installed; pip install 'specwise\[ray\]'"):
        RaySenders("127.0.0.1:6379", [], 0.0, print)


@pytest.mark.parametrize("address", ["127.0.0.1:notaport", "ray://:10001", "10.0.0.1:70000"])
def test_a_malformed_ray_address_is_refused(address):
    pytest.importorskip("ray")
    from specwise.load.ray import RaySenders

    with pytest.raises(SpecwiseError, match="--ray: .* is not a Ray address"):
        RaySenders(address, [], 0.0, print)
