"""Results on disk: one directory per bench run (schema: what is stored; store: writing and reading it)."""

from specwise.results.schema import (MANIFEST, METRICS, REQUESTS, SCHEMA_VERSION, SUMMARY, AcceptanceSource, Manifest,
                                     MetricSample, RequestRecord, Run, TokenSource, chunk_steps)
from specwise.results.store import RunWriter, WriteFailed, load_run, now_iso, require_fresh, write_json_atomic

__all__ = ["MANIFEST", "METRICS", "REQUESTS", "SCHEMA_VERSION", "SUMMARY", "AcceptanceSource", "Manifest",
           "MetricSample", "RequestRecord", "Run", "RunWriter", "TokenSource", "WriteFailed", "chunk_steps", "load_run",
           "now_iso", "require_fresh", "write_json_atomic"]
