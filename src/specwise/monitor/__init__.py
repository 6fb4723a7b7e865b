"""Production monitoring: the live view of servers (`watch`), Prometheus rules whose thresholds can come from
an experiment (`rules`), and a Grafana dashboard with the same panels. The door is lazy: the views, rules and
dashboard are pure and load without the HTTP client that `watch` polls with."""

from specwise._lazy import lazy_door

__all__ = ["GUIDE", "WINDOWS", "Figures", "ModelView", "Poll", "Threshold", "dashboard", "rule_groups", "series",
           "thresholds_from_findings", "timeline", "views", "watch"]

__getattr__ = lazy_door(__name__, {
    **{name: ".view" for name in ("WINDOWS", "Figures", "ModelView", "Poll", "timeline", "views")},
    **{name: ".rules" for name in ("GUIDE", "Threshold", "rule_groups", "series", "thresholds_from_findings")},
    "dashboard": ".grafana", "watch": ".live"})
