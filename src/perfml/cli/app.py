"""The ``perfml`` command line: one group per part of the lifecycle.

A failure prints one line on stderr and exits non-zero: 2 for a usage error, 1 for a failure.
``--debug`` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import typer

from perfml import __version__
from perfml.cli import (
    alerts,
    anomalies,
    controller,
    drift,
    evaluate,
    export,
    generate,
    ingest,
    init,
    models,
    monitor,
    pipeline,
    receive,
    report,
    runs,
    serve,
    store,
    train,
    up,
)
from perfml.cli import dashboard as dashboard_cli
from perfml.cli.state import CliState, err
from perfml.errors import PerfmlError

app = typer.Typer(
    name="perfml",
    help="Operate anomaly-detection services for the performance metrics of a fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(alerts.app, name="alerts")
app.add_typer(anomalies.app, name="anomalies")
app.add_typer(controller.app, name="controller")
app.add_typer(drift.app, name="drift")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(export.app, name="export")
app.add_typer(generate.app, name="generate")
app.add_typer(ingest.app, name="ingest")
app.add_typer(store.app, name="store")
app.add_typer(models.app, name="models")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(runs.app, name="runs")
app.add_typer(serve.app, name="serve")
app.command("init")(init.init)
app.command("demo")(init.demo)
app.command("dashboard")(dashboard_cli.dashboard)
app.command("train")(train.train)
app.command("up")(up.up)
app.command("live")(up.live)
app.command("monitor")(monitor.monitor)
app.command("report")(report.report)
app.command("score")(anomalies.score)
app.command("receive")(receive.receive)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"perfml {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="perfml.yaml to read (default: $PERFML_CONFIG, ./perfml.yaml)"
    ),
    workspace: Path | None = typer.Option(None, "--workspace", "-w", help="workspace folder"),
    debug: bool = typer.Option(False, "--debug", help="show the traceback of a failure"),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    ctx.obj = CliState(
        config=config, workspace=workspace, debug=debug, command=ctx.invoked_subcommand
    )
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="perfml", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        err.print("perfml: aborted", style="red", highlight=False)
        return 130
    except typer.TyperException as exc:
        _fail(exc.format_message(), exc, debug)
        return exc.exit_code
    except PerfmlError as exc:
        _fail(str(exc), exc, debug)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("perfml: interrupted", style="red", highlight=False)
        return 130
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", exc, debug)
        return 1
    return result if isinstance(result, int) else 0


def _fail(message: str, exc: BaseException, debug: bool) -> None:
    if debug:
        err.print("".join(traceback.format_exception(exc)), highlight=False, markup=False)
    one_line = " ".join(message.split())
    err.print(f"perfml: error: {one_line}", style="red", highlight=False, markup=False)


def run() -> None:
    sys.exit(main())
