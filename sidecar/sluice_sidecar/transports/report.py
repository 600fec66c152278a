"""The one request a sidecar makes that is not a provider call: its final usage report.

At shutdown ``api.fleet`` POSTs the ``contract.usage.FinalUsage`` to the operator's ``/usage``
once, with a short session of its own (the provider pool is closing, and its bulkhead is for
provider calls). Errors are logged by the caller; nothing here raises.
"""

from __future__ import annotations

import aiohttp


async def post_report(url: str, body: bytes, token: str, timeout_s: float) -> int | str:
    """POST ``body`` as JSON with the bearer token: the HTTP status, or why it was not sent."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, data=body, headers=headers) as answer,
        ):
            return answer.status
    except (aiohttp.ClientError, TimeoutError) as error:
        return str(error) or type(error).__name__
