"""The load generator: the streaming protocol (pure), the HTTP client, the driver that keeps a load's
shape, the /metrics scrape, and `execute_bench`, which ties them to a run directory."""

from specwise.load.bench import BenchConfig, execute_bench, hardware, read_api_key
from specwise.load.client import Endpoint, auth_headers, client_for, send
from specwise.load.driver import drive
from specwise.load.protocol import Api, Fault, Stream, per_request_acceptance, request_body
from specwise.load.scrape import probe, scrape

__all__ = ["Api", "BenchConfig", "Endpoint", "Fault", "Stream", "auth_headers", "client_for", "drive",
           "execute_bench", "hardware", "per_request_acceptance", "probe", "read_api_key", "request_body", "scrape",
           "send"]
