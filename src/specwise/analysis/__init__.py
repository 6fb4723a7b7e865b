"""Analysis of results on disk (pure): statistics with bootstrap CIs, a bench run's summary, the server's
window, per-request acceptance, and the A/B comparison of two arms at one load."""

from specwise.analysis.acceptance import Acceptance, Bucket, acceptance, drafted_accepted, histogram
from specwise.analysis.compare import (BucketComparison, CellRuns, LatencyMetric, LoadComparison, Point, compare, latencies_ms, point,
                                       server_view)
from specwise.analysis.equivalence import Equivalence, equivalence, first_divergence
from specwise.analysis.server import ServerWindow, server_window
from specwise.analysis.stats import (Estimate, bootstrap_percentiles, clustered_ratio, percentile, ratio,
                                     spread_between, widened)
from specwise.analysis.summary import (BenchSummary, Generator, Goodput, Latency, generator_bound, measured, scrapes,
                                       server_timed, span_s, summarize)

__all__ = ["Acceptance", "BenchSummary", "Bucket", "BucketComparison", "CellRuns", "Equivalence", "Estimate", "Generator", "Goodput", "Latency", "LatencyMetric",
           "LoadComparison", "Point", "ServerWindow", "acceptance", "bootstrap_percentiles", "clustered_ratio", "compare",
           "drafted_accepted", "equivalence", "first_divergence", "generator_bound", "histogram", "latencies_ms", "measured", "percentile", "point", "ratio", "scrapes",
           "server_timed", "server_view", "server_window", "span_s", "spread_between", "summarize", "widened"]
