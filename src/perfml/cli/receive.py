"""``perfml receive``: the Prometheus remote-write receiver in the foreground.

Prometheus writes to ``http://HOST:PORT/api/v1/write`` (``remote_write:`` in its config);
each request is answered once its points are logged on disk, and they reach the feature store
within ``sources.remote_write.flush_interval``. SIGINT or SIGTERM stops it cleanly: the
requests in flight end, then everything acknowledged is stored.
"""

from __future__ import annotations

import typer

from perfml.cli.state import err, out, state, stop_on_signals
from perfml.serving.server import AppServer
from perfml.sources.receiver import Receiver


def receive(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="default: sources.remote_write.host"),
    port: int | None = typer.Option(None, "--port", help="default: sources.remote_write.port"),
) -> None:
    """Receive Prometheus remote write into the feature store until interrupted."""
    parts = state(ctx).parts()
    settings = parts.settings.sources.remote_write
    changed = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    receiver = Receiver.from_settings(
        parts.store(),
        settings.model_copy(update=changed),
        parts.path / "landing",
        server=lambda app, at, on: AppServer(
            app, at, on, name="remote-write receiver", setting="--port"
        ),
    )
    with stop_on_signals() as stopping:
        receiver.start()
        try:
            replayed = receiver.landing.replayed
            if replayed.records:
                err.print(
                    f"perfml: stored {replayed.points} points acknowledged before a stop "
                    f"({replayed.records} records, {replayed.torn} torn tails skipped)",
                    highlight=False,
                )
            out.print(f"receiving remote write on {receiver.url}", highlight=False)
            stopping.wait()
        finally:
            totals = receiver.stop()
    out.print(
        f"stopped: {totals.requests} requests, {totals.acknowledged} samples acknowledged, "
        f"{totals.stored} stored, {totals.dropped} dropped, {totals.refused} refused",
        highlight=False,
    )
