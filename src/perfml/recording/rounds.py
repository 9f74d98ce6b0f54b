"""Rounds on a fixed cadence, as Prometheus scrapes and evaluates: one every interval, a failed
round logged and the next one on time, an overrun skipping the missed rounds rather than
bursting to catch up.

>>> import threading
>>> stop, done = threading.Event(), []
>>> def round_() -> None:
...     done.append(1)
...     if len(done) == 3:
...         stop.set()
>>> every(0.001, stop, round_, "counting")
>>> len(done)
3
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def every(
    interval_s: float,
    stop: threading.Event,
    round_: Callable[[], object],
    what: str,
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Run ``round_`` every ``interval_s`` seconds until ``stop`` is set; a round that raises
    is logged (as ``what``) and given to ``on_error``, and the rounds go on."""
    next_round = time.monotonic()
    while not stop.is_set():
        try:
            round_()
        except Exception as error:
            if on_error is not None:
                on_error(error)
            log.warning("%s round failed: %s", what, error)
        next_round += interval_s
        delay = next_round - time.monotonic()
        if delay < 0:  # a round overran: skip the missed ones rather than burst
            next_round = time.monotonic()
            delay = 0
        stop.wait(delay)
