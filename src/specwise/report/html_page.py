"""The report as one self-contained HTML file (plots inlined as PNG data URIs, no script, no CDN: it works
offline).

Every string from the experiment (names, paths, rule reasons) reaches the HTML through
jinja2 with autoescape on; the plots are images, so no text of theirs is markup.
"""

from __future__ import annotations

from specwise.experiment.findings import Findings
from specwise.report.markdown_page import by_workload, num
from specwise.report.plots import acceptance_plot, kv_plot, latency_plot, speedup_plot

DECISION_COLORS = {"ENABLE": "#1a7f37", "ENABLE_WITH_LIMIT": "#9a6700", "DISABLE": "#cf222e",
                   "INCONCLUSIVE": "#57606a"}


def html(findings: Findings) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("specwise", "data"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True))
    env.filters["num"] = num
    groups = []
    for workload, group in by_workload(findings).items():
        groups.append({
            "workload": workload, "findings": group,
            "tpot_plot": latency_plot(group, findings.load_unit, "tpot") if group[0].loads else None,
            "ttft_plot": latency_plot(group, findings.load_unit, "ttft") if group[0].loads else None,
            "speedup_plot": speedup_plot(group, findings.load_unit) if group[0].loads else None,
            "kv_plot": kv_plot(group, findings.load_unit),
            "acceptance_plots": {f.candidate: acceptance_plot(f) for f in group},
        })
    return env.get_template("report.html.j2").render(findings=findings, groups=groups, colors=DECISION_COLORS)
