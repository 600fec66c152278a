"""Command line entry point: ``sluice-sidecar`` / ``python -m sluice_sidecar``."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError

from sluice_sidecar.api.server import loop_factory, serve
from sluice_sidecar.contract.model import config_problems
from sluice_sidecar.observability.logs import configure_logging
from sluice_sidecar.service.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
    except (ValidationError, OSError) as error:
        # A bad flag, variable or token file: say which, not a traceback.
        problems = config_problems(error) if isinstance(error, ValidationError) else [str(error)]
        print("sluice-sidecar: invalid settings:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            runner.run(serve(settings))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        logging.getLogger("sluice").error("cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
