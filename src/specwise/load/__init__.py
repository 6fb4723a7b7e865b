"""The load generator: the streaming protocol (pure), the HTTP client (keep-alive connections of its own), the
driver that keeps a load's shape and watches its own limits, the senders that share a schedule (this process,
worker processes, Ray actors), the /metrics scrape, and `execute_bench`, which ties them to a run directory."""

from specwise.load.bench import BenchConfig, execute_bench, hardware, read_api_key
from specwise.load.client import Connections, Endpoint, auth_headers, send
from specwise.load.driver import Gauge, drive
from specwise.load.protocol import Api, Fault, Stream, per_request_acceptance, request_body
from specwise.load.scrape import probe, scrape
from specwise.load.senders import Job, LocalSenders, ProcessSenders, SenderFailed

__all__ = ["Api", "BenchConfig", "Connections", "Endpoint", "Fault", "Gauge", "Job", "LocalSenders", "ProcessSenders",
           "SenderFailed", "Stream", "auth_headers", "drive", "execute_bench", "hardware", "per_request_acceptance",
           "probe", "read_api_key", "request_body", "scrape", "send"]
