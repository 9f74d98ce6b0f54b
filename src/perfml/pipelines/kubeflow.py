"""A pipeline as a Kubeflow Pipelines v2 spec, compiled with the kfp SDK (the ``kubeflow`` extra).

Each task becomes a lightweight Python component on the perfml image (kfp is not installed in
it at run time: the image has the extra). The component's body is generated from the task's
bindings and does one thing: call :func:`run_step`, which runs the step in
:mod:`perfml.pipelines.worker`, as the local runner does. The same component code therefore
runs on a cluster and in kfp's local ``SubprocessRunner``.

- artifacts (``outputs=`` and inputs bound to ``Ref(task, name)``) → ``Output[Artifact]`` /
  ``Input[Artifact]``, their ``.path`` handed to the step;
- small values → component parameters; a step's return value → the component's return;
  values kfp has no type for travel as JSON strings;
- ``Param`` bindings → pipeline parameters (defaults from the pipeline's);
- ``retries``/``backoff`` → ``set_retry`` (factor 2, backoff rounded up to whole seconds);
- ``resources`` → CPU request, memory request and limit;
- ``timeout`` → kfp has no per-task timeout: :func:`run_step` kills the step's process tree
  after ``timeout`` seconds (per attempt, as locally) and fails the attempt;
- ``cache`` → kfp caching on or off;
- ``Part`` bindings → not component inputs: a component whose step takes parts of the
  workspace gets the pipeline parameter ``perfml_parts`` (the
  :class:`~perfml.pipelines.parts.PartsSource` as JSON, given at compile time and changeable
  per run) and opens them in its own process.

Secrets and volumes (``needs``) need ``kfp-kubernetes``; they are not in the spec: use the
``k8s`` target (:mod:`perfml.pipelines.kubernetes`) for them.
"""

from __future__ import annotations

import inspect
import json
import linecache
import math
import subprocess
import sys
import tempfile
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from perfml.errors import PerfmlError
from perfml.pipelines import worker
from perfml.pipelines.dsl import Param, Part, Pipeline, Ref, Task
from perfml.pipelines.errors import InvalidPipelineError, PipelineError
from perfml.pipelines.kubernetes import (
    DEFAULT_IMAGE,
    cpu_quantity,
    memory_quantity,
    step_module_path,
)
from perfml.pipelines.parts import PartsSource, check_parts, part_inputs
from perfml.pipelines.processes import kill_tree

_TYPES: dict[Any, str] = {int: "int", float: "float", bool: "bool", str: "str"}
_JSON = "json"  # a value kfp has no parameter type for: a JSON string
PARTS_PARAM = "perfml_parts"
"""The pipeline parameter that says where steps open the parts of the workspace (JSON)."""


class KfpMissingError(PerfmlError):
    def __init__(self) -> None:
        super().__init__("the Kubeflow target needs the kfp SDK: pip install 'perfml[kubeflow]'")


class StepTimeoutError(PipelineError):
    def __init__(self, task: str, timeout: float) -> None:
        self.task = task
        self.timeout = timeout
        super().__init__(f"task {task!r}: DeadlineExceeded after {timeout:g} s (killed)")


class StepFailedError(PipelineError):
    def __init__(self, task: str, exit_code: int, failure: Mapping[str, str] | None) -> None:
        self.task = task
        self.exit_code = exit_code
        why = f": {failure['type']}: {failure['message']}" if failure else ""
        super().__init__(f"task {task!r}: Error, the step exited with code {exit_code}{why}")


def run_step(
    task: str,
    step: Mapping[str, Any],
    values: Mapping[str, Any],
    paths: Mapping[str, str],
    outputs: Mapping[str, str],
    parts: str | None = None,
) -> Any:
    """Run one attempt of a step in a worker process, killed after ``step["timeout"]`` s.

    Called by the generated component bodies; ``step`` names the function (``module``,
    ``qualname``, ``sys_path``), the inputs that arrive as JSON strings (``json``), the inputs
    bound to parts of the workspace (``parts``: input → part, opened from the source
    ``parts``, JSON) and whether the return value leaves as one (``json_result``)."""
    decoded = {k: json.loads(v) if k in step["json"] else v for k, v in values.items()}
    with tempfile.TemporaryDirectory(prefix="perfml-kfp-") as scratch:
        result = Path(scratch) / "result.json"
        spec = {
            "module": step["module"],
            "qualname": step["qualname"],
            "sys_path": step["sys_path"],
            "values": decoded,
            "paths": dict(paths),
            "outputs": dict(outputs),
            "result": str(result),
        }
        if step.get("parts"):
            spec["parts"] = {"source": json.loads(parts or "null"), "inputs": step["parts"]}
        spec_path = Path(scratch) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        command = [sys.executable, "-m", "perfml.pipelines.worker", str(spec_path)]
        with subprocess.Popen(command, start_new_session=True) as process:
            try:
                code = process.wait(timeout=step["timeout"])
            except subprocess.TimeoutExpired:
                kill_tree(process.pid)
                raise StepTimeoutError(task, step["timeout"]) from None
        if code != 0:
            raise StepFailedError(task, code, worker.read_failure(result))
        value = json.loads(result.read_text())["value"]
    return json.dumps(value) if step["json_result"] else value


def _kind(annotation: Any) -> str:
    """The kfp parameter type for a Python annotation (a type or, postponed, its name)."""
    if isinstance(annotation, str):
        names = {"int": int, "float": float, "bool": bool, "str": str}
        annotation = names.get(annotation, annotation)
    return _TYPES.get(annotation, _JSON)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # names only imported for type checking: read them as written
        return dict(getattr(fn, "__annotations__", {}))


def _fits(value: Any, kind: str) -> bool:
    if kind == _JSON:
        return True
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"int": int, "bool": bool, "str": str}[kind]
    return isinstance(value, expected) and (kind == "bool" or not isinstance(value, bool))


class _Plan:
    """The kfp type of every value: pipeline parameters, task inputs and task results."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.results: dict[str, str | None] = {}
        self.params: dict[str, str] = {}
        self.inputs: dict[tuple[str, str], str] = {}
        for name in pipeline.order:
            task = pipeline.tasks[name]
            hints = _hints(task.step.fn)
            returns = hints.get("return", inspect.Signature.empty)
            none = returns is None or returns is type(None) or returns == "None"
            self.results[name] = None if none else _kind(returns)
            for input_name, binding in task.inputs.items():
                wanted = _kind(hints.get(input_name))
                if isinstance(binding, Param):
                    default = pipeline.defaults.get(binding.name)
                    fits = binding.name not in pipeline.defaults or _fits(default, wanted)
                    kind = self.params.setdefault(binding.name, wanted if fits else _JSON)
                elif isinstance(binding, Ref) and binding.output is None:
                    kind = self.results[binding.task] or _JSON
                elif isinstance(binding, Ref | Part):
                    continue  # an artifact, or a part of the workspace
                else:
                    kind = wanted if _fits(binding, wanted) else _JSON
                self.inputs[(name, input_name)] = kind
        self.parts = any(part_inputs(task) for task in pipeline.tasks.values())
        if self.parts and PARTS_PARAM in self.params:
            raise InvalidPipelineError(pipeline.name, f"parameter {PARTS_PARAM!r} is perfml's")
        for param in self.params:
            if not param.isidentifier():
                raise InvalidPipelineError(pipeline.name, f"parameter {param!r} for kfp")


def _python_type(kind: str) -> str:
    return "str" if kind == _JSON else kind


def _component_source(task: Task, plan: _Plan, function_name: str) -> str:
    step = task.step
    args: list[str] = []
    values, paths, json_inputs = [], [], []
    for input_name, binding in task.inputs.items():
        if isinstance(binding, Part):
            continue
        if isinstance(binding, Ref) and binding.output is not None:
            args.append(f"{input_name}: Input[Artifact]")
            paths.append(f"{input_name!r}: {input_name}.path")
        else:
            kind = plan.inputs[(task.name, input_name)]
            args.append(f"{input_name}: {_python_type(kind)}")
            values.append(f"{input_name!r}: {input_name}")
            if kind == _JSON:
                json_inputs.append(input_name)
    parts = part_inputs(task)
    if parts:
        args.append(f"{PARTS_PARAM}: str")
    args += [f"{output}: Output[Artifact]" for output in step.outputs]
    outputs = [f"{o!r}: {o}.path" for o in step.outputs]
    result = plan.results[task.name]
    spec = {
        "module": step.fn.__module__,
        "qualname": step.fn.__qualname__,
        "sys_path": step_module_path(step.fn),
        "timeout": step.timeout,
        "json": json_inputs,
        "json_result": result == _JSON,
        "parts": parts,
    }
    returns = "None" if result is None else _python_type(result)
    return (
        f"def {function_name}({', '.join(args)}) -> {returns}:\n"
        f'    """perfml step {step.name!r} of task {task.name!r}."""\n'
        "    from perfml.pipelines.kubeflow import run_step\n\n"
        f"    {'' if result is None else 'return '}run_step(\n"
        f"        {task.name!r},\n"
        f"        {spec!r},\n"
        f"        {{{', '.join(values)}}},\n"
        f"        {{{', '.join(paths)}}},\n"
        f"        {{{', '.join(outputs)}}},\n"
        + (f"        {PARTS_PARAM},\n" if parts else "")
        + "    )\n"
    )


def _component(task: Task, plan: _Plan, image: str) -> Any:
    from kfp import dsl

    function_name = "step_" + task.name.replace("-", "_")
    source = _component_source(task, plan, function_name)
    # kfp reads a component's source with inspect: keep the generated code in linecache
    filename = f"<perfml-kfp {plan.pipeline.name}.{task.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {
        "Input": dsl.Input,
        "Output": dsl.Output,
        "Artifact": dsl.Artifact,
    }
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    function = namespace[function_name]
    return dsl.component(base_image=image, install_kfp_package=False)(function)


def build_kfp_pipeline(
    pipeline: Pipeline, image: str = DEFAULT_IMAGE, parts: PartsSource | None = None
) -> Any:
    """The kfp pipeline (a ``GraphComponent``) for ``pipeline``: compile it with
    ``kfp.compiler.Compiler``, or call it after ``kfp.local.init`` to run it locally. Steps
    that take parts of the workspace open them from ``parts`` (the default of the
    ``perfml_parts`` parameter)."""
    try:
        from kfp import dsl
    except ImportError as missing:
        raise KfpMissingError() from missing
    check_parts(pipeline, parts)
    plan = _Plan(pipeline)
    components = {name: _component(pipeline.tasks[name], plan, image) for name in pipeline.order}

    def body(*args: Any, **kwargs: Any) -> None:
        params = signature.bind(*args, **kwargs).arguments
        made: dict[str, Any] = {}
        for name in pipeline.order:
            task = pipeline.tasks[name]
            arguments: dict[str, Any] = {}
            if part_inputs(task):
                arguments[PARTS_PARAM] = params[PARTS_PARAM]
            for input_name, binding in task.inputs.items():
                if isinstance(binding, Part):
                    continue
                if isinstance(binding, Param):
                    arguments[input_name] = params[binding.name]
                elif isinstance(binding, Ref) and binding.output is not None:
                    arguments[input_name] = made[binding.task].outputs[binding.output]
                elif isinstance(binding, Ref):
                    arguments[input_name] = made[binding.task].outputs["Output"]
                elif plan.inputs[(name, input_name)] == _JSON:
                    arguments[input_name] = json.dumps(binding)
                else:
                    arguments[input_name] = binding
            made[name] = _configure(components[name](**arguments), task)

    parameters = []
    for param, kind in plan.params.items():
        default = pipeline.defaults.get(param, inspect.Parameter.empty)
        if kind == _JSON and param in pipeline.defaults:
            default = json.dumps(default)
        annotation = {"int": int, "float": float, "bool": bool}.get(kind, str)
        parameters.append(
            inspect.Parameter(
                param,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default,
                annotation=annotation,
            )
        )
    if plan.parts and parts is not None:
        parameters.append(
            inspect.Parameter(
                PARTS_PARAM,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=parts.model_dump_json(),
                annotation=str,
            )
        )
    signature = inspect.Signature(sorted(parameters, key=_required_first))
    body.__signature__ = signature  # type: ignore[attr-defined]
    body.__name__ = pipeline.name.replace("-", "_")
    body.__doc__ = f"perfml pipeline {pipeline.name!r}."
    return dsl.pipeline(name=pipeline.name, description=body.__doc__)(body)


def _required_first(parameter: inspect.Parameter) -> bool:
    return parameter.default is not inspect.Parameter.empty


def _configure(kfp_task: Any, task: Task) -> Any:
    step = task.step
    kfp_task.set_display_name(task.name)
    kfp_task.set_cpu_request(cpu_quantity(step.resources))
    kfp_task.set_memory_request(memory_quantity(step.resources))
    kfp_task.set_memory_limit(memory_quantity(step.resources))
    kfp_task.set_caching_options(enable_caching=step.cache)
    if step.retries:
        kfp_task.set_retry(
            num_retries=step.retries,
            backoff_duration=f"{math.ceil(step.backoff)}s",
            backoff_factor=2.0,
        )
    return kfp_task


def compile_kubeflow(
    pipeline: Pipeline,
    path: Path,
    image: str = DEFAULT_IMAGE,
    parts: PartsSource | None = None,
) -> Path:
    """Write the Kubeflow Pipelines v2 spec (IR YAML) of ``pipeline`` to ``path`` (its steps
    opening the parts of the workspace from ``parts``)."""
    kfp_pipeline = build_kfp_pipeline(pipeline, image, parts)
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(kfp_pipeline, package_path=str(path))
    return path
