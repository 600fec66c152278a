"""The operator's log configuration: kopf's line per successful handler run is kept for
``--verbose``.

kopf logs ``Handler 'pod_event' succeeded.`` at INFO for every event of every watched Pod and
Deployment in the cluster, and ``Timer 'collect_usage' succeeded.`` every interval per
namespace: thousands of lines an hour that say nothing went wrong. Failures, retries and the
operator's own messages keep their levels.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
KOPF_OBJECTS = "kopf.objects"


class QuietSuccesses(logging.Filter):
    """Drops kopf's INFO "… succeeded." lines (they stay at DEBUG level, i.e. ``--verbose``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and record.msg.endswith(" succeeded.")
        )


def configure(*, verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    # The API client logs whole response bodies at debug level: never useful, often secret.
    logging.getLogger("kubernetes_asyncio").setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger(KOPF_OBJECTS).addFilter(QuietSuccesses())
