"""Command line entry point: ``sluice-sidecar`` / ``python -m sluice_sidecar``."""

from __future__ import annotations

import asyncio
import logging
import sys

from sluice_sidecar.logs import configure_logging
from sluice_sidecar.server import serve
from sluice_sidecar.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        logging.getLogger("sluice").error("cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
