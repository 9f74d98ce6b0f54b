"""``perfml pipeline``: compile a pipeline of the catalog for Kubeflow Pipelines or Kubernetes."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from perfml.cli.options import parse_pairs
from perfml.cli.state import err
from perfml.pipelines.catalog import build
from perfml.pipelines.kubernetes import DEFAULT_IMAGE
from perfml.workspace import cluster_parts

app = typer.Typer(
    help="Compile pipelines for Kubeflow Pipelines or Kubernetes.", no_args_is_help=True
)


class Target(StrEnum):
    kubeflow = "kubeflow"
    k8s = "k8s"


@app.command("compile")
def compile_pipeline(
    name: str = typer.Argument(..., help="the pipeline: training, batch-scoring or a plugin's"),
    target: Target = typer.Option(..., "--target", "-t", help="kubeflow or k8s"),
    output: Path = typer.Option(..., "--output", "-o", help="the YAML file to write"),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="the perfml image to run steps in"),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="k8s: a parameter KEY=VALUE, VALUE as JSON if it parses"
    ),
    run: str = typer.Option("default", "--run", help="k8s: the run name (artifact folder)"),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="k8s: namespace"),
    pod_config: str | None = typer.Option(
        None,
        "--pod-config",
        help="the perfml.yaml the steps' pods read their workspace from "
        "(default: $PERFML_CONFIG in the pod, else ./perfml.yaml)",
    ),
) -> None:
    """Write NAME as a Kubeflow Pipelines v2 spec (IR YAML) or as Kubernetes Jobs."""
    pipeline = build(name)
    parts = cluster_parts(pod_config)
    if target is Target.kubeflow:
        from perfml.pipelines.kubeflow import compile_kubeflow

        compile_kubeflow(pipeline, output, image, parts)
        typer.echo(f"wrote the Kubeflow pipeline {pipeline.name!r} to {output}")
        return
    from perfml.pipelines.kubernetes import compile_jobs, params_config_map, unset_params

    params = parse_pairs(param, "--param")
    compile_jobs(pipeline, output, image, params=params, run=run, namespace=namespace, parts=parts)
    typer.echo(f"wrote {len(pipeline.order)} Jobs of {pipeline.name!r} to {output}")
    unset = unset_params(pipeline, params)
    if unset:
        err.print(
            f"perfml: note: {', '.join(unset)} have no value: set them with --param or in "
            f"the ConfigMap {params_config_map(pipeline)} (the Jobs wait for them)",
            highlight=False,
            markup=False,
        )
