"""``python -m sluice_operator``: run the operator (all namespaces) with its handlers."""

from __future__ import annotations

import argparse
import asyncio
import sys

import kopf

from sluice_operator import (
    handlers,  # noqa: F401 - registers the handlers
    logs,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice-operator", description=__doc__)
    parser.add_argument("--namespace", action="append", help="watch only these namespaces")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="kopf liveness endpoint"
    )
    args = parser.parse_args(argv)
    logs.configure(verbose=args.verbose)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=args.liveness,
            standalone=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
