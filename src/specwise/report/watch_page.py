"""The report of a recorded `specwise watch` (`--record DIR`): acceptance over the trailing minute and KV-cache
usage over time, as a self-contained HTML page (escaped, plot inlined), Markdown and JSON."""

from __future__ import annotations

from pathlib import Path

from specwise.monitor import Poll, timeline
from specwise.report.console import three_decimals
from specwise.report.plots import watch_plot
from specwise.results import Run, write_json_atomic
from specwise.thresholds import ACCEPT_OFF

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>specwise watch: {{ url }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}td,th{padding:.2rem .6rem}</style>
</head><body><h1>Recorded watch of {{ url }}</h1>
<p>{{ polls }} polls from {{ started }}, {{ failed }} failed (server unreachable or not answering).</p>
<img alt="acceptance and KV-cache usage over time" src="{{ plot }}">
<table><tr><th>s</th><th>acceptance (1 m)</th><th>acceptance length</th><th>drafts/s</th><th>KV usage</th></tr>
{% for t, f, kv in rows %}<tr><td>{{ '%.0f' % t }}</td><td>{{ f.acceptance_rate|fmt }}</td>
<td>{{ f.acceptance_length|fmt }}</td><td>{{ f.drafts_per_s|fmt }}</td><td>{{ kv|fmt }}</td></tr>{% endfor %}
</table></body></html>"""


def write_watch_report(run: Run, break_even: float = ACCEPT_OFF) -> dict[str, Path]:
    import jinja2

    polls = [Poll(s.t_s, {"": s.values} if s.error is None else {}, s.error) for s in run.samples]
    rows = timeline(polls, "")
    plot = watch_plot([(t, f.acceptance_rate, kv) for t, f, kv in rows], break_even)
    env = jinja2.Environment(autoescape=True)
    env.filters["fmt"] = three_decimals
    failed = sum(1 for p in polls if p.error is not None)
    page = env.from_string(PAGE).render(url=run.manifest.url, polls=len(polls), started=run.manifest.started_at,
                                        failed=failed, plot=plot, rows=rows)
    lines = [f"# Recorded watch of {run.manifest.url}".replace("<", "&lt;"), "",
             f"{len(polls)} polls, {failed} failed.", "", "| s | acceptance (1 m) | length | drafts/s | KV usage |",
             "|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join([f"{t:.0f}", *map(three_decimals, (f.acceptance_rate, f.acceptance_length,
                                                                  f.drafts_per_s, kv))]) + " |" for t, f, kv in rows]
    paths = {"html": run.directory / "report.html", "markdown": run.directory / "report.md",
             "json": run.directory / "report.json"}
    paths["html"].write_text(page, encoding="utf-8")
    paths["markdown"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json_atomic(paths["json"], {"url": run.manifest.url, "polls": len(polls), "failed": failed,
                                      "timeline": [{"t_s": t, **f.model_dump(mode="json"), "kv_usage": kv}
                                                   for t, f, kv in rows]})
    return paths
