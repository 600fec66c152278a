"""One HTTP/1.1 exchange over a raw socket, for bytes an HTTP client library refuses to send."""

from __future__ import annotations

import asyncio

import orjson


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, object]:
    """Send ``head`` (request line and headers, without the blank line) and ``body``.

    Returns the status and the JSON body (or the text when it is not JSON); the request asks
    for ``Connection: close`` so the answer ends with the connection.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    try:
        return int(status_line.split()[1]), orjson.loads(payload)
    except orjson.JSONDecodeError:
        return int(status_line.split()[1]), payload.decode("utf-8", "replace")
