"""`tune`'s report: the speedup surface over k × load (predicted and measured, as heatmaps and tables), the
picks and the schedule, the proof's table, the runs spent against the full grid, and the vLLM command — in the
terminal, as Markdown and as one offline HTML file (heatmaps as PNG data URIs, every string escaped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from specwise.report.markdown_page import cell, md
from specwise.tune.result import TuneResult

HTML, MARKDOWN = "tune.html", "tune.md"


def _grid(result: TuneResult) -> dict[tuple[int, float], Any]:
    return {(p.k, p.load): p for p in result.surface}


def _cell_text(p: Any) -> str:
    measured = f"{p.measured:.2f}×" if p.measured is not None else "·"
    predicted = f"{p.predicted:.2f}" if p.predicted is not None else "—"
    return f"{measured} ({predicted})"


def surface_rows(result: TuneResult) -> list[list[str]]:
    """k by load: measured objective × (predicted TPOT speedup); a mark where the pick is, ! where the run is
    disqualified (an SLO the baseline meets broken, a P99 regression, a generator-bound arm)."""
    grid = _grid(result)
    rows = []
    for k in result.ks:
        row = [str(k)]
        for load in result.loads:
            p = grid[(k, load)]
            text = _cell_text(p) + (" ◀" if result.picks.get(load) == k else "") + (" !" if p.breaks else "")
            row.append(text if p.by_search or p.measured is None else text + " g")
        rows.append(row)
    return rows


def _load_head(result: TuneResult, load: float) -> str:
    held = result.batches.get(load)
    return f"c{load:g}" + (f" (batch {held:.1f})" if held is not None else "")


def _schedule_text(result: TuneResult) -> str:
    return ", ".join(f"{lo}–{hi}: k={k}" if k else f"{lo}–{hi}: off" for lo, hi, k in result.schedule)


def render_tune(result: TuneResult, console: Console) -> None:
    table = Table(title=f"{escape(result.candidate)} on {escape(result.workload)}: {result.objective} over the "
                  "baseline, measured × (predicted TPOT speedup)", title_justify="left")
    table.add_column("k")
    for load in result.loads:
        table.add_column(_load_head(result, load), justify="right")
    for row in surface_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print("  · not measured   ◀ the pick at that load   ! disqualified (SLO, P99, generator-bound)   "
                  "g grid check only", highlight=False)
    console.print(f"runs: {result.runs} of the full grid's {result.grid_runs} (budget {result.budget_runs}), "
                  "the baseline's included", highlight=False)
    for g in result.grid:
        console.print(f"  grid check at c{g.load:g}: search picked k={g.pick_k} ({g.pick_value:.2f}×), grid best "
                      f"k={g.grid_k} ({g.grid_value:.2f}×): {100 * g.shortfall:.1f} % short", highlight=False)
    console.print(f"schedule: {_schedule_text(result)}" + (f"; best static k: {result.static_k}"
                                                           if result.static_k else ""), highlight=False)
    if result.proof:
        proof = Table(title="proof (A/B, through the verdict)", title_justify="left")
        for column in ("load", "k there", "vs baseline", "vs static k"):
            proof.add_column(column)
        for r in result.proof:
            proof.add_row(f"c{r.load:g}", str(r.k), escape(f"{r.vs_baseline}: {r.vs_baseline_why}"),
                          escape(f"{r.vs_static}: {r.vs_static_why}" if r.vs_static else "—"))
        console.print(proof)
    style = "bold green" if result.recommended == "schedule" else "bold yellow"
    console.print(f"[{style}]recommended: {escape(result.recommended)}[/] — {escape('; '.join(result.reasons))}")
    if result.command:
        console.print(f"vLLM command ({escape(result.recommended)}):", highlight=False)
        console.print(result.command, highlight=False, markup=False, soft_wrap=True)
        for note in result.command_notes:
            console.print(f"  note: {note}", highlight=False, markup=False)


def markdown(result: TuneResult) -> str:
    lines = [f"# tune: {md(result.candidate)} on {md(result.workload)}", "",
             f"**Recommended: {md(result.recommended)}** — {md('; '.join(result.reasons))}", "",
             f"Objective: {result.objective}. Runs: {result.runs} of the full grid's {result.grid_runs} (budget "
             f"{result.budget_runs}), the baseline's included.", "",
             "## Surface: measured objective × (predicted TPOT speedup)", "",
             "| k | " + " | ".join(_load_head(result, load) for load in result.loads) + " |",
             "|---" * (len(result.loads) + 1) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in surface_rows(result)]
    lines += ["", "· not measured; ◀ the pick; ! disqualified (SLO, P99, generator-bound); g measured by the grid "
              "check only",
              "", f"Schedule: {md(_schedule_text(result))}" + (f"; best static k: {result.static_k}"
                                                             if result.static_k else "")]
    if result.grid:
        lines += ["", "## Grid check", "", "| load | search's k | measured | grid's best k | measured | short |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| c{g.load:g} | {g.pick_k} | {g.pick_value:.2f}× | {g.grid_k} | {g.grid_value:.2f}× | "
                  f"{100 * g.shortfall:.1f} % |" for g in result.grid]
    if result.proof:
        lines += ["", "## Proof", "", "| load | k there | vs baseline | vs static k |", "|---|---|---|---|"]
        lines += [f"| c{r.load:g} | {r.k} | {cell(r.vs_baseline + ': ' + r.vs_baseline_why)} | "
                  f"{cell((r.vs_static or '—') + (': ' + r.vs_static_why if r.vs_static else ''))} |"
                  for r in result.proof]
    if result.command:
        lines += ["", "## vLLM command", "", "```", result.command.replace("```", "'''"), "```"]
        lines += [f"- {md(n)}" for n in result.command_notes]
    return "\n".join(lines) + "\n"


def heatmap(result: TuneResult, which: str) -> str:
    """A PNG data URI: k (rows) × load (columns), coloured by speedup around 1 (`which`: predicted|measured)."""
    import numpy as np

    from specwise.report.plots import _figure, _png

    grid = _grid(result)
    values = np.array([[getattr(grid[(k, load)], which) if getattr(grid[(k, load)], which) is not None else np.nan
                        for load in result.loads] for k in result.ks], dtype=float)
    fig, (ax,) = _figure(width=1.2 + 1.1 * len(result.loads), height=0.9 + 0.45 * len(result.ks))
    spread = max(0.05, float(np.nanmax(np.abs(values - 1.0)))) if np.isfinite(values).any() else 0.5
    image = ax.imshow(values, cmap="RdYlGn", vmin=1 - spread, vmax=1 + spread, aspect="auto")
    ax.set_xticks(range(len(result.loads)), [_load_head(result, load) for load in result.loads])
    ax.set_yticks(range(len(result.ks)), [str(k) for k in result.ks])
    ax.set_ylabel("k")
    for i, k in enumerate(result.ks):
        for j, load in enumerate(result.loads):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}" + ("◀" if result.picks.get(load) == k else ""), ha="center",
                        va="center", fontsize=8)
    ax.set_title(f"{which} ({'TPOT speedup' if which == 'predicted' else result.objective + ' over the baseline'})")
    fig.colorbar(image, ax=ax, fraction=0.05)
    return _png(fig)


TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>tune: {{ r.candidate }}</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>
<h1>tune: {{ r.candidate }} on {{ r.workload }}</h1>
<p><b>Recommended: {{ r.recommended }}</b> — {{ r.reasons | join("; ") }}</p>
<p>Objective {{ r.objective }}; runs {{ r.runs }} of the full grid's {{ r.grid_runs }} (budget {{ r.budget_runs }}),
the baseline's included.</p>
<img alt="predicted surface" src="{{ predicted }}"> <img alt="measured surface" src="{{ measured }}">
<h2>Surface: measured objective × (predicted TPOT speedup)</h2>
<table><tr><th>k</th>{% for head in heads %}<th>{{ head }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>
<p>Schedule: {{ schedule }}{% if r.static_k %}; best static k: {{ r.static_k }}{% endif %}</p>
{% if r.proof %}<h2>Proof</h2><table><tr><th>load</th><th>k there</th><th>vs baseline</th><th>vs static k</th></tr>
{% for p in r.proof %}<tr><td>c{{ "%g" | format(p.load) }}</td><td>{{ p.k }}</td><td>{{ p.vs_baseline }}:
{{ p.vs_baseline_why }}</td><td>{{ p.vs_static or "—" }} {{ p.vs_static_why }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.command %}<h2>vLLM command</h2><pre>{{ r.command }}</pre><ul>{% for n in r.command_notes %}<li>{{ n }}</li>
{% endfor %}</ul>{% endif %}</body></html>
"""


def html(result: TuneResult) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=jinja2.select_autoescape(default=True, default_for_string=True))
    return env.from_string(TEMPLATE).render(r=result, rows=surface_rows(result), schedule=_schedule_text(result),
                                            heads=[_load_head(result, load) for load in result.loads],
                                            predicted=heatmap(result, "predicted"),
                                            measured=heatmap(result, "measured"))


def write_tune_report(result: TuneResult, directory: Path) -> dict[str, Path]:
    paths = {"html": directory / HTML, "markdown": directory / MARKDOWN}
    paths["html"].write_text(html(result), encoding="utf-8")
    paths["markdown"].write_text(markdown(result), encoding="utf-8")
    return paths
