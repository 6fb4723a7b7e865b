"""Rendering, never computing: the experiment's report as HTML (plots inlined), Markdown and JSON, and the
terminal's tables. The door is lazy so that `specwise plan` renders without loading plots or findings."""

from specwise._lazy import lazy_door

__all__ = ["html", "markdown", "render_plan", "render_summary", "render_verdicts", "watch_table", "write_report", "write_summary",
           "write_watch_report"]

__getattr__ = lazy_door(__name__, {"html": ".html_page", "markdown": ".markdown_page", "write_report": ".files", "write_summary": ".files",
                                   "render_plan": ".console", "render_summary": ".console",
                                   "render_verdicts": ".console", "watch_table": ".console",
                                   "write_watch_report": ".watch_page"})
