"""The terminal's rendering: a plan, a bench run's summary, an experiment's verdicts, a traffic profile, the
live watch (rich)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from specwise.check import Status

if TYPE_CHECKING:  # types only: `specwise plan` renders without loading the analysis or the findings
    from specwise.analysis import Acceptance, BenchSummary, Estimate, Latency
    from specwise.experiment.findings import Findings
    from specwise.monitor import ModelView
    from specwise.plan import Plan
    from specwise.verdict.method import Recommendation
    from specwise.workload.traffic import Distribution, TrafficProfile

STATUS_STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.UNKNOWN: "dim"}


def _checks_table(title: str, checks: list) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("reason", overflow="fold")
    for c in checks:
        table.add_row(escape(c.name), f"[{STATUS_STYLE[c.status]}]{c.status.value}[/]", escape(c.reason))
    return table


def _models(p: Plan) -> Table:
    models = Table(title="Models", title_justify="left")
    for col in ("role", "model", "params", "precision", "TP", "weights", "KV / token"):
        models.add_column(col, justify="right" if col in ("params", "TP", "weights", "KV / token") else "left")
    for role, s in (("target", p.target), ("draft", p.draft)):
        if s is not None:
            active = f" ({s.active_params / 1e9:.1f}B active)" if s.active_params != s.params else ""
            # A model's name is a path or a hub id, not markup: `[bold]` in it is text.
            models.add_row(role, escape(s.name), f"{s.params / 1e9:.2f}B{active}", s.precision,
                           str(s.tensor_parallel_size), f"{s.weights_gb:.1f} GB",
                           f"{s.kv_bytes_per_token / 1024:.1f} KiB")
    return models


def _memory(p: Plan, console: Console) -> None:
    m = p.memory
    mem = Table(title=f"Memory on {m.num_gpus}× {m.gpu} ({m.total_memory_gb:.0f} GB)", title_justify="left")
    mem.add_column("")
    mem.add_column("GB", justify="right")
    mem.add_row("weights (target + draft)", f"{m.weights_gb:.1f}")
    mem.add_row("left after weights (total − weights)", f"{m.left_after_weights_gb:.1f}")
    mem.add_row(f"vLLM KV budget (total × {m.gpu_memory_utilization:g} − weights − overhead)", f"{m.kv_budget_gb:.1f}")
    console.print(mem)

    per_gpu = Table(title="Per GPU", title_justify="left")
    for col in ("GPU", "usable", "target w", "draft w", "overhead", "KV budget", "KV tokens"):
        per_gpu.add_column(col, justify="right")
    for r in m.per_gpu:
        per_gpu.add_row(str(r.index), f"{r.usable_gb:.1f}", f"{r.target_weights_gb:.1f}", f"{r.draft_weights_gb:.1f}",
                        f"{r.overhead_gb:.1f}", f"{r.kv_budget_gb:.1f}", f"{r.kv_tokens:,}")
    console.print(per_gpu)

    c = m.concurrency
    if p.draft is not None:
        console.print(f"Concurrent {c.context}-token sequences: {c.max_seqs_without_draft} without the draft, "
                      f"{c.max_seqs_with_draft} with it (the draft costs {c.draft_cost_seqs}, "
                      f"{c.draft_cost_pct:.0f} %).")
    else:
        console.print(f"Concurrent {c.context}-token sequences: {c.max_seqs_without_draft}.")
    style = "bold green" if p.fits else "bold red"
    console.print(f"[{style}]{'FITS' if p.fits else 'DOES NOT FIT'}[/] — {m.fit_reason}\n")

    console.print(_checks_table("Memory rules", m.checks))


def _prediction(p: Plan, console: Console) -> None:
    pr = p.prediction
    speed = Table(title=f"Predicted speedup at α = {pr.alpha:.3g} ({pr.alpha_source}), k = {pr.k} "
                        f"({pr.tokens_per_step:.2f} tokens/step) — {pr.label}", title_justify="left")
    for col in ("concurrency", "baseline TPOT ms", "spec TPOT ms", "speedup", "break-even α",
                f"fits KV ({pr.request_tokens}-token requests)"):
        speed.add_column(col, justify="right")
    for r in pr.rows:
        colour = "green" if r.speedup >= 1 else "red"
        speed.add_row(str(r.concurrency), f"{r.baseline_tpot_ms:.1f}", f"{r.speculative_tpot_ms:.1f}",
                      f"[{colour}]{r.speedup:.2f}×[/]",
                      f"{r.break_even_alpha:.2f}" if r.break_even_alpha is not None else "never",
                      "yes" if r.fits_kv_cache else "no")
    console.print(speed)
    by_alpha = Table(title="The same over a range of acceptance: which α a pair reaches is measured (specwise run, "
                           "or --acceptance-from), not assumed", title_justify="left")
    by_alpha.add_column("concurrency", justify="right")
    alphas = sorted(pr.rows[0].speedup_by_alpha) if pr.rows else []
    for a in alphas:
        by_alpha.add_column(f"α {a:g}", justify="right")
    by_alpha.add_column("break-even α", justify="right")
    for r in pr.rows:
        by_alpha.add_row(str(r.concurrency), *(f"[{'green' if r.speedup_by_alpha[a] >= 1 else 'red'}]"
                                               f"{r.speedup_by_alpha[a]:.2f}×[/]" for a in alphas),
                         f"{r.break_even_alpha:.2f}" if r.break_even_alpha is not None else "never")
    console.print(by_alpha)
    cross = (f"speedup crosses 1 at concurrency ≈ {pr.crossover_concurrency:.0f}" if pr.crossover_concurrency
             else "no crossover in the range shown")
    console.print(f"Crossover: {cross}.")
    best = ", ".join(f"α {b.alpha:g} → k={b.best_k} ({b.speedup:.2f}×)" for b in pr.best_k if b.concurrency == 1)
    console.print(f"Best k at concurrency 1: {best}\n")


def render_plan(p: Plan, console: Console) -> None:
    console.print(_models(p))
    _memory(p, console)
    if p.pair_checks:
        console.print(_checks_table("Pair checks", p.pair_checks))
    _prediction(p, console)
    console.print(f"[bold]vLLM {p.vllm_version}[/] — {p.command.interface}")
    console.print(p.command.shell, soft_wrap=True, highlight=False, markup=False)
    console.print("[dim]baseline:[/]")
    console.print(p.baseline_command.shell, soft_wrap=True, highlight=False, markup=False)
    for note in p.command.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def _ms(est: Estimate) -> str:
    ci = f" [{est.low:.1f}–{est.high:.1f}]" if est.low is not None and est.high is not None else ""
    return f"{est.value:.1f}{ci}"


def three_decimals(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render_summary(summary: BenchSummary, console: Console) -> None:
    state = "complete" if summary.complete else f"INCOMPLETE ({summary.stop_reason})"
    console.print(f"[bold]{summary.requests} requests[/] ({summary.ok} ok, {summary.warmup} warm-up left out) in "
                  f"{summary.duration_s:.1f} s — {state}", highlight=False)
    if summary.estimated_tokens:
        console.print(f"{summary.estimated_tokens} request(s) streamed without logprobs or a usable usage: their token "
                      "count is the chunk count, an estimate, so they are left out of TPOT and ITL", highlight=False)
    if summary.errors:
        console.print("errors: " + ", ".join(f"{k} × {v}" for k, v in sorted(summary.errors.items())),
                      highlight=False)
    gen = summary.generator
    if gen.bound:
        why = ", ".join(f"{k} × {v}" for k, v in sorted(gen.reasons.items()))
        console.print(f"[bold red]GENERATOR-BOUND[/]: {gen.client_bound} of {summary.requests} requests were held back "
                      f"or timed by a saturated client ({why}). The load asked for was not sent: no latency is shown "
                      f"and the throughput is the generator's limit, not the server's. Rerun with more senders "
                      f"(--workers N, now {gen.senders}) or a lower load.", highlight=False)
    elif gen.client_bound:
        console.print(f"{gen.client_bound} request(s) held back or timed late by the client, left out of the "
                      "latencies", highlight=False)
    line = (f"throughput {summary.request_throughput_rps:.2f} req/s, "
            f"{summary.output_throughput_tok_s:.1f} output tok/s" + (" (the generator's limit)" if gen.bound else ""))
    if summary.goodput:
        slo = ", ".join(f"{k} ≤ {v:g} ms" for k, v in summary.goodput.slo_ms.items())
        line += f"; goodput {summary.goodput.rate_rps:.2f} req/s ({summary.goodput.fraction:.0%} within {slo})"
    console.print(line, highlight=False)
    if gen.stall_ms_p99 is not None:
        console.print(f"client: {gen.senders} sender(s), event-loop stall P99 {gen.stall_ms_p99:.1f} ms"
                      + (f", busiest loop window {gen.busy_share_max:.0%}" if gen.busy_share_max is not None else ""),
                      highlight=False)
    table = Table(title="Latency, ms (P50/P95/P99 with 95 % bootstrap CI)", title_justify="left")
    for col in ("metric", "n", "mean", "P50", "P95", "P99"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    rows: list[tuple[str, Latency | None]] = [("TTFT", summary.ttft_ms), ("TPOT", summary.tpot_ms),
                                              ("ITL", summary.itl_ms), ("E2E", summary.e2e_ms)]
    for name, lat in rows:
        if lat:
            table.add_row(name, str(lat.count), f"{lat.mean:.1f}", _ms(lat.p50), _ms(lat.p95), _ms(lat.p99))
    console.print(table)
    _acceptance(summary.acceptance, console)


def _acceptance(acc: Acceptance, console: Console) -> None:
    if acc.server and acc.server.drafts:
        s = acc.server
        per_pos = " ".join(f"{v:.2f}" for v in s.per_position.values())
        console.print(f"server counters over the run: acceptance {three_decimals(s.acceptance_rate)}, mean acceptance "
                      f"length {s.mean_acceptance_length:.2f}, by position {per_pos}", highlight=False)
    elif acc.server:
        console.print("server counters over the run: no speculative drafts (speculation off, or another engine)",
                      highlight=False)
    if any(b.with_acceptance for b in acc.buckets):
        table = Table(title="Per-request acceptance by temperature", title_justify="left")
        for col in ("temperature", "requests", "P10", "P50", "P90", "pooled", "source"):
            table.add_column(col, justify="right")
        for b in acc.buckets:
            table.add_row(f"{b.temperature:g}", str(b.requests), three_decimals(b.p10), three_decimals(b.p50), three_decimals(b.p90), three_decimals(b.pooled),
                          ", ".join(f"{k} {v}" for k, v in sorted(b.sources.items())))
        console.print(table)
        console.print(f"per-request pooled acceptance {three_decimals(acc.per_request_pooled)}"
                      + (f" (server counters: {three_decimals(acc.server.acceptance_rate)})" if acc.server else ""),
                      highlight=False)
    if acc.merged_chunk_requests:
        console.print(f"{acc.merged_chunk_requests} requests had merged chunks (no per-chunk estimate for them)",
                      highlight=False)


def render_verdicts(findings: Findings, console: Console) -> None:
    """The answer first: one row per candidate and workload — what to do, up to which load, for which
    traffic — with the rules of thumb that disagree with the measurement named (the report has them all)."""
    table = Table(title="Verdicts", show_lines=True)
    for col in ("candidate", "workload", "verdict", "why"):
        table.add_column(col)
    for f in findings.findings:
        v = f.verdict
        why = v.headline + (f"\nvLLM: {v.limit.vllm_setting}" if v.limit else "")
        disagree = [r.name for r in v.rules if r.agrees is False]
        if disagree:
            why += "\nrules of thumb that disagree with the measurement: " + ", ".join(disagree)
        # Cells are rich markup: what comes from the experiment is escaped to show as written.
        table.add_row(escape(f.candidate), escape(f"{f.workload} ({f.temperatures})"), v.decision.value, escape(why))
    console.print(table)


def _colored(value: float | None, text: str, red_below: float, green_from: float) -> str:
    if value is None:
        return "–"
    style = "bold red" if value < red_below else "green" if value >= green_from else "yellow"
    return f"[{style}]{text}[/]"


def watch_table(views: list[ModelView], break_even: float) -> Table:
    """One row per server and model: acceptance coloured against break-even (red below it, yellow up to the
    guide's gain zone, green above), KV usage red when full."""
    from specwise.monitor import WINDOWS
    from specwise.thresholds import ACCEPT_GAIN, KV_FULL

    table = Table(title="speculative decoding, live", title_justify="left")
    for column in ("server", "model", "status", *(f"accept {w}" for w, _ in WINDOWS), "length 1m", "by position 5m",
                   "drafts/s", "out tok/s", "run/wait", "KV", "preempt"):
        table.add_column(column, overflow="fold")
    for v in views:
        accept = []
        for label, _ in WINDOWS:
            f = v.windows.get(label)
            rate = f.acceptance_rate if f else None
            accept.append(_colored(rate, f"{rate:.2f}" if rate is not None else "", break_even,
                                   max(ACCEPT_GAIN, break_even)))
        one, five = v.windows.get("1m"), v.windows.get("5m")
        kv = "–" if v.kv_usage is None else (f"[bold red]{v.kv_usage:.0%}[/]" if v.kv_usage >= KV_FULL
                                             else f"{v.kv_usage:.0%}")
        status = v.status + (f", {v.restarts} restart(s)" if v.restarts else "")
        table.add_row(
            escape(v.url), escape(v.model), f"[green]{status}[/]" if v.status == "ok" else f"[bold red]{escape(status)}[/]",
            *accept,
            f"{one.acceptance_length:.2f}" if one and one.acceptance_length else "–",
            " ".join(f"{a:.2f}" for a in five.per_position.values()) if five and five.per_position else "–",
            f"{one.drafts_per_s:.1f}" if one and one.drafts_per_s is not None else "–",
            f"{one.output_tok_s:.1f}" if one and one.output_tok_s is not None else "–",
            "–" if v.running is None else f"{v.running:g}/{v.waiting or 0:g}", kv,
            f"{five.preemptions:g}" if five and five.preemptions is not None else "–")
    return table


def _dist(d: Distribution | None, fmt: str = "{:.0f}") -> str:
    if d is None:
        return "—"
    return f"P10 {fmt.format(d.p10)} · P50 {fmt.format(d.p50)} · P90 {fmt.format(d.p90)}  (n={d.count})"


def render_traffic(p: TrafficProfile, advice: Recommendation, console: Console) -> None:
    """A log's profile and what to test: figures only, never the log's text."""
    table = Table(title=f"Traffic: {escape(p.source)} ({p.format}, {p.requests} requests)", show_header=False)
    table.add_column("what")
    table.add_column("measured")
    if p.temperature is not None:
        t = p.temperature
        mix = ", ".join(f"{temp:g}: {share:.0%}" for temp, share in t.mix[:12]) + (" …" if len(t.mix) > 12 else "")
        table.add_row("temperature mix", mix + (f"  ({t.unset} unset → 1.0)" if t.unset else ""))
        table.add_row("temperature", f"median {t.median:g}, spread {t.spread:g}, homogeneity {t.homogeneity:.0%}")
    unit = p.length_unit
    if p.prompt_tokens or p.output_tokens:
        table.add_row("prompt tokens", _dist(p.prompt_tokens))
        table.add_row("output tokens", _dist(p.output_tokens))
    table.add_row("prompt characters", _dist(p.prompt_chars))
    table.add_row("output characters", _dist(p.output_chars))
    table.add_row("output echoing the prompt", _dist(p.overlap, "{:.0%}") + "  share of output 3-grams in the prompt")
    if p.structured_share is not None:
        table.add_row("structured (JSON, code)", f"{p.structured_share:.0%} of {p.structured_requests}")
    if p.arrivals is not None:
        a = p.arrivals
        table.add_row("arrivals", f"mean {a.mean_rate:.3g} req/s, peak {a.peak_rate:.3g} req/s (busiest "
                      f"{a.peak_window_s:.0f} s), over {a.span_s:.0f} s" + (
                          f"; burstiness {a.burstiness:.2g} (gamma shape: 1 Poisson, < 1 burstier)"
                          if a.burstiness is not None else
                          "; burstiness unknown: the log's clock is too coarse for the gaps" if a.coarse_times else ""))
    if p.latency is not None:
        table.add_row("latency", f"{p.latency.dominated_by.upper()}-bound: TTFT is "
                      f"{_dist(p.latency.ttft_share, '{:.0%}')} of end-to-end")
    if p.bad_lines:
        shown = "; ".join(f"line {n}: {why}" for n, why in p.bad_examples[:5])
        table.add_row("bad lines", escape(f"{p.bad_lines} skipped — {shown}" + (" …" if p.bad_lines > 5 else "")))
    console.print(table)
    if unit == "characters":
        console.print("lengths in characters: give --tokenizer MODEL_DIR (or a log with usage counts) for tokens",
                      style="dim", highlight=False)
    classes = Table(title="Traffic classes")
    for col in ("class", "share", "temperature", "echo (P50)", "structured", "output tokens (P50)", "try"):
        classes.add_column(col)
    by_name = {c.name: c for c in advice.classes}
    for c in p.classes:
        a = by_name[c.name]
        classes.add_row(escape(c.name), f"{c.share:.0%}", f"median {c.temperature.median:g}",
                        f"{c.overlap.p50:.0%}" if c.overlap else "—",
                        f"{c.structured_share:.0%}" if c.structured_share is not None else "—",
                        f"{c.output_tokens.p50:.0f}" if c.output_tokens else "—", a.method.value)
    console.print(classes)
    console.print(f"[bold]recommendation:[/] {escape(advice.headline)}", highlight=False)
    for reason in advice.reasons:
        console.print(f"  - {escape(reason)}", highlight=False)
    if advice.test is not None:
        t = advice.test
        loads = ", ".join(f"{v:g}" for v in t.levels) + (" req/s" if t.load_unit == "rate" else " in flight")
        console.print(f"[bold]to test:[/] temperatures {escape(t.temperatures or '?')} at {loads}"
                      + (f", output P50 {t.output_tokens_p50:.0f} tokens" if t.output_tokens_p50 else ""),
                      highlight=False)
    console.print("a prior from the guide's rules: the emitted experiment measures it (--emit-experiment)",
                  style="dim", highlight=False)
