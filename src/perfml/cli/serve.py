"""``perfml serve``: the inference server (Open Inference Protocol v2) on uvicorn.

The workspace assembles the server (:meth:`perfml.workspace.Workspace.serving_app`: the
registry, the model repository, the feature store for feedback, the metrics). With
``--workers N`` each uvicorn worker builds its own from the same settings (passed in the
environment), and the metrics are summed over the workers.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from fastapi import FastAPI

from perfml.cli.state import err, out, state
from perfml.config import Settings
from perfml.errors import UsageError
from perfml.registry.names import parse_ref
from perfml.serving.app import check_served
from perfml.serving.server import check_listen
from perfml.serving.telemetry import ServingMetrics
from perfml.workspace import Workspace

SETTINGS_ENV = "PERFML_SERVE_SETTINGS"
MODELS_ENV = "PERFML_SERVE_MODELS"

app = typer.Typer(
    help="Serve models over the Open Inference Protocol v2, following their aliases.",
    invoke_without_command=True,
)


@app.callback()
def serve(
    ctx: typer.Context,
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        metavar="REF",
        help="NAME@ALIAS, NAME:VERSION or NAME; repeat for several",
    ),
    host: str | None = typer.Option(None, "--host", help="default: serving.host"),
    port: int | None = typer.Option(None, "--port", help="default: serving.port"),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes"),
) -> None:
    """Serve models by alias; reload them when the alias moves."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    settings = state(ctx).settings
    refs = list(model or settings.serving.models)
    if not refs:
        raise UsageError("nothing to serve: pass --model NAME@production or set serving.models")
    for ref in refs:
        parse_ref(ref)  # a bad name fails here, not in every worker
    check_served(state(ctx).parts().registry(background_delivery=False), refs)
    listen_host = host or settings.serving.host
    listen_port = port or settings.serving.port
    check_listen(listen_host, listen_port, "inference server", "--port or serving.port")
    err.print(f"perfml: serving {', '.join(refs)} on http://{listen_host}:{listen_port}")
    if workers == 1:
        app = state(ctx).parts().serving_app(refs)
        uvicorn.run(app, host=listen_host, port=listen_port)
        return
    ServingMetrics.prepare_multiprocess(settings.workspace.absolute() / "serving-metrics")
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    os.environ[MODELS_ENV] = "\n".join(refs)
    uvicorn.run(
        "perfml.cli.serve:app_factory",
        factory=True,
        host=listen_host,
        port=listen_port,
        workers=workers,
    )


def app_factory() -> FastAPI:
    """uvicorn's factory for each worker: the settings the parent put in the environment."""
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    return Workspace(settings).serving_app(os.environ[MODELS_ENV].split("\n"))


@app.command("export")
def export(
    ctx: typer.Context,
    target: str = typer.Option(..., "--target", "-t", help="seldon or kserve"),
    model: str = typer.Option(..., "--model", "-m", metavar="REF", help="NAME@ALIAS to pin"),
    out_dir: Path = typer.Option(..., "--output", "-o", help="folder to write to"),
    image: str | None = typer.Option(
        None, "--image", help="MLServer image with perfml[mlserver] (a custom server)"
    ),
    namespace: str | None = typer.Option(None, "--namespace", help="Kubernetes namespace"),
    storage_uri: str | None = typer.Option(
        None, "--storage-uri", help="where the model folder is uploaded (s3://, gs://, pvc://)"
    ),
) -> None:
    """Write a SeldonDeployment or KServe InferenceService serving NAME@ALIAS on MLServer."""
    from perfml.serving.engines import export_model, parse_target

    chosen = parse_target(target)
    done = export_model(
        state(ctx).parts().registry(background_delivery=False),
        parse_ref(model),
        chosen,
        out_dir,
        image=image,
        namespace=namespace,
        storage_uri=storage_uri,
    )
    version = done.version
    out.print(
        f"{version.model}:{version.version} (sha256:{version.digest[:12]}…) → "
        f"{done.manifest}, {done.model_settings}",
        highlight=False,
    )
