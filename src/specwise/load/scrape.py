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

MAX_NAME_CHARS = 200


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
        listed = response.json()["data"]
        if not isinstance(listed, list):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise SpecwiseError("--url", f"{shown.rstrip('/')}/v1/models is not an OpenAI-compatible model list "
                            f"(HTTP {response.status_code})", "point --url at the server's root") from None
    # An entry without a usable id is skipped: the user can still name the model with --model.
    models = [name for entry in listed if isinstance(entry, dict) and (name := _name(entry.get("id")))]
    try:
        version = _name(httpx.get(f"{url.rstrip('/')}/version", headers=headers, timeout=5).json().get("version"))
    except (httpx.HTTPError, ValueError, AttributeError, RecursionError):
        version = None
    return models, version


def _name(value: object) -> str | None:
    """A server's id or version as text: a number becomes its digits, anything else is no name."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value)[:MAX_NAME_CHARS] or None


async def scrape(client: httpx.AsyncClient, url: str, zero: float, phase: str,
                 timeout_s: float = 10.0) -> MetricSample:
    """One /metrics scrape, as a failed sample when it errs or takes over `timeout_s` in all (httpx's own
    timeouts are per read: a server trickling bytes would pass them)."""
    t = time.perf_counter() - zero
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.get(f"{url.rstrip('/')}/metrics", timeout=None)
            response.raise_for_status()
        # A vLLM /metrics page is large: parse it off the event loop, which is timing sends.
        values = await asyncio.to_thread(snapshot, response.text)
        return MetricSample(t_s=t, phase=phase, values=values)  # type: ignore[arg-type]
    except TimeoutError:
        return MetricSample(t_s=t, phase=phase, error=f"timeout after {timeout_s:g} s")  # type: ignore[arg-type]
    except (httpx.HTTPError, ValueError) as exc:
        return MetricSample(t_s=t, phase=phase, error=type(exc).__name__)  # type: ignore[arg-type]
