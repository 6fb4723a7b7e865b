"""What a server says about itself: its models and version (probed before a run) and its Prometheus
/metrics (scraped before, during and after one)."""

from __future__ import annotations

import asyncio
import time

import httpx

from specwise.errors import SpecwiseError
from specwise.load.client import auth_headers
from specwise.metrics import snapshot
from specwise.results import MetricSample
from specwise.urls import redact


def probe(url: str, api_key: str | None) -> tuple[list[str], str | None]:
    """The served model names and the server's version; a clear error when the server cannot be reached."""
    headers, shown = auth_headers(api_key), redact(url)
    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/models", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise SpecwiseError("--url", f"cannot reach {shown} ({type(exc).__name__})",
                            "start the server or fix the URL (e.g. http://127.0.0.1:8000)") from None
    if response.status_code in (401, 403):
        raise SpecwiseError("--api-key-env/--api-key-file", f"{shown} refused the key (HTTP {response.status_code})",
                            "give the server's API key")
    try:
        models = [m["id"] for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise SpecwiseError("--url", f"{shown.rstrip('/')}/v1/models is not an OpenAI-compatible model list "
                            f"(HTTP {response.status_code})", "point --url at the server's root") from None
    try:
        version = httpx.get(f"{url.rstrip('/')}/version", headers=headers, timeout=5).json().get("version")
    except (httpx.HTTPError, ValueError, AttributeError):
        version = None
    return models, version


async def scrape(client: httpx.AsyncClient, url: str, zero: float, phase: str) -> MetricSample:
    t = time.perf_counter() - zero
    try:
        response = await client.get(f"{url.rstrip('/')}/metrics", timeout=10)
        response.raise_for_status()
        # A vLLM /metrics page is large: parse it off the event loop, which is timing sends.
        values = await asyncio.to_thread(snapshot, response.text)
        return MetricSample(t_s=t, phase=phase, values=values)  # type: ignore[arg-type]
    except (httpx.HTTPError, ValueError) as exc:
        return MetricSample(t_s=t, phase=phase, error=type(exc).__name__)  # type: ignore[arg-type]
