"""``perfml pipeline``: compile a built-in pipeline for Kubeflow Pipelines or Kubernetes."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path

import typer

from perfml.cli.options import parse_pairs
from perfml.cli.state import err
from perfml.errors import UsageError
from perfml.pipelines.dsl import Pipeline
from perfml.pipelines.kubernetes import DEFAULT_IMAGE

app = typer.Typer(
    help="Compile pipelines for Kubeflow Pipelines or Kubernetes.", no_args_is_help=True
)

BUILTIN: dict[str, str] = {"training": "perfml.pipelines.training:build_training_pipeline"}
"""Pipeline name → ``module:function`` returning it (imported only when asked for)."""


class Target(StrEnum):
    kubeflow = "kubeflow"
    k8s = "k8s"


class UnknownPipelineError(UsageError):
    def __init__(self, name: str, known: Mapping[str, str]) -> None:
        self.name = name
        super().__init__(f"no pipeline named {name!r}; known pipelines: {', '.join(sorted(known))}")


def load_pipeline(name: str, known: Mapping[str, str] | None = None) -> Pipeline:
    """The pipeline ``name``, built by the function ``known[name]`` (default: the built-in
    pipelines) names."""
    known = BUILTIN if known is None else known
    if name not in known:
        raise UnknownPipelineError(name, known)
    module, _, function = known[name].partition(":")
    build: Callable[[], Pipeline] = getattr(importlib.import_module(module), function)
    return build()


@app.command("compile")
def compile_pipeline(
    name: str = typer.Argument(..., help=f"the pipeline: {', '.join(sorted(BUILTIN))}"),
    target: Target = typer.Option(..., "--target", "-t", help="kubeflow or k8s"),
    output: Path = typer.Option(..., "--output", "-o", help="the YAML file to write"),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="the perfml image to run steps in"),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="k8s: a parameter KEY=VALUE, VALUE as JSON if it parses"
    ),
    run: str = typer.Option("default", "--run", help="k8s: the run name (artifact folder)"),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="k8s: namespace"),
) -> None:
    """Write NAME as a Kubeflow Pipelines v2 spec (IR YAML) or as Kubernetes Jobs."""
    pipeline = load_pipeline(name)
    if target is Target.kubeflow:
        from perfml.pipelines.kubeflow import compile_kubeflow

        compile_kubeflow(pipeline, output, image)
        typer.echo(f"wrote the Kubeflow pipeline {pipeline.name!r} to {output}")
        return
    from perfml.pipelines.kubernetes import compile_jobs, params_config_map, unset_params

    params = parse_pairs(param, "--param")
    compile_jobs(pipeline, output, image, params=params, run=run, namespace=namespace)
    typer.echo(f"wrote {len(pipeline.order)} Jobs of {pipeline.name!r} to {output}")
    unset = unset_params(pipeline, params)
    if unset:
        err.print(
            f"perfml: note: {', '.join(unset)} have no value: set them with --param or in "
            f"the ConfigMap {params_config_map(pipeline)} (the Jobs wait for them)",
            highlight=False,
            markup=False,
        )
