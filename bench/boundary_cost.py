"""CPU of the request boundary's JSON depth check next to parsing the same body with orjson.

The check (``sluice_sidecar.api.boundary.nesting_depth``) runs on every proxied body, so a body
built to be expensive for it (many tiny containers) must still cost less than parsing it.
Prints, per body shape, the median of several rounds for both and their ratio.

    .venv/bin/python bench/boundary_cost.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import orjson

from sluice_sidecar.api.boundary import MAX_JSON_DEPTH, nesting_depth

SHAPES: dict[str, bytes] = {
    "chat, 50 messages": orjson.dumps(
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "a line of text " * 20}] * 50,
        }
    ),
    "100,000 empty arrays": b'{"model": "m", "x": [' + b",".join([b"[]"] * 100_000) + b"]}",
    f"{MAX_JSON_DEPTH} levels deep x 1,000": b'{"model": "m", "x": ['
    + b",".join([b"[" * (MAX_JSON_DEPTH - 2) + b"]" * (MAX_JSON_DEPTH - 2)] * 1000)
    + b"]}",
}


def median_seconds(run: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    print(f"{'body':<28} {'bytes':>10} {'parse ms':>9} {'check ms':>9} {'check/parse':>12}")
    for name, raw in SHAPES.items():
        body = orjson.loads(raw)
        parse = median_seconds(lambda raw=raw: orjson.loads(raw), rounds)
        check = median_seconds(lambda body=body: nesting_depth(body), rounds)
        ms = f"{parse * 1e3:>9.3f} {check * 1e3:>9.3f}"
        print(f"{name:<28} {len(raw):>10,} {ms} {check / parse:>12.2f}")


if __name__ == "__main__":
    main()
