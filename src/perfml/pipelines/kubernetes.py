"""A pipeline as Kubernetes ``batch/v1`` Jobs, one per task, in dependency order.

The Jobs carry what the local runner enforces, in Kubernetes' own terms:

- ``timeout`` → the pod's ``activeDeadlineSeconds`` (each attempt is a pod, as each attempt
  is a process locally), and the Job's ``activeDeadlineSeconds`` bounds the whole job: every
  attempt, Kubernetes' own retry delays, and time spent Pending (a missing volume), so that no
  job hangs unseen;
- ``retries`` → ``backoffLimit`` (``restartPolicy: Never``: a retry is a new pod);
- ``resources`` → requests (CPU, memory) and a memory limit;
- ``needs.env`` → env vars from a Secret (``secretKeyRef``, never a value);
- ``needs.paths`` → volumes from PersistentVolumeClaims mounted at those paths; like the
  local runner's preconditions, a missing claim keeps the pod Pending;
- artifacts → files on the workspace claim, at ``/workspace/runs/<run>/<task>/``.

Kubernetes has no order between Jobs: the ``perfml.io/order`` and ``perfml.io/depends-on``
annotations say which to start after which (apply them in order, or let an orchestrator do it).
A Job's container runs ``python -m perfml.pipelines.kubernetes SPEC``: :func:`main` reads the
upstream return values from the workspace and runs the step in
:mod:`perfml.pipelines.worker`.

>>> memory_quantity(Resources(memory="0.5Gi"))
'512Mi'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from perfml import __version__
from perfml.pipelines import worker
from perfml.pipelines.dsl import Param, Part, Pipeline, Ref, Resources, Task
from perfml.pipelines.errors import InvalidPipelineError
from perfml.pipelines.parts import PartsSource, check_parts, parts_spec

DEFAULT_IMAGE = f"ghcr.io/perfml/perfml:{__version__}"
"""The perfml image (with the ``kubeflow`` extra) steps run in, unless told otherwise."""
WORKSPACE = "/workspace"
"""Where the workspace claim is mounted in every Job's pod."""
LABEL_PREFIX = "perfml.io"
PARAM_ENV = "PERFML_PARAM_"
"""A parameter's value reaches a Job as the env var ``PERFML_PARAM_<name>`` (JSON)."""
PERMANENT_EXIT = 78
"""A step's exit code for a permanent failure (a refused credential): the Job fails at once."""
_MI = 2**20
_K8S_FIRST_RETRY, _K8S_MAX_RETRY = 10, 360  # the Job controller's retry delays, in seconds


def memory_quantity(resources: Resources) -> str:
    """The memory of ``resources`` as a canonical Kubernetes quantity (``512Mi`` or bytes)."""
    size = resources.memory_bytes
    return f"{size // _MI}Mi" if size % _MI == 0 else str(size)


def cpu_quantity(resources: Resources) -> str:
    return f"{max(1, round(resources.cpu * 1000))}m"


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label made of ``parts``: lowercase, ``-``, at most ``limit`` characters
    (a hash of the whole keeps long names unique)."""
    raw = "-".join(parts)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-") or "x"
    if len(name) > limit:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: limit - 9].rstrip('-')}-{digest}"
    return name


def label_value(value: str) -> str:
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)[:63] or "x"


def step_module_path(fn: Any) -> list[str]:
    """Where to import a step's module from when it is not installed (a test module)."""
    if fn.__module__.split(".")[0] == "perfml":
        return []
    module_file = Path(getattr(sys.modules[fn.__module__], "__file__", "") or ".").resolve()
    depth = fn.__module__.count(".") + 1
    return [str(module_file.parents[depth - 1])] if module_file.is_file() else []


def job_deadline(timeout: float, retries: int) -> int:
    """Seconds the whole Job may take: every attempt plus the Job controller's retry delays
    (10 s, doubling, at most 6 min)."""
    delays = sum(min(_K8S_FIRST_RETRY << i, _K8S_MAX_RETRY) for i in range(retries))
    return math.ceil(timeout) * (retries + 1) + delays


def _task_spec(task: Task, run_root: str, parts: PartsSource | None = None) -> dict[str, Any]:
    """What :func:`main` needs to run ``task`` (JSON, passed as the container's argument)."""
    values: dict[str, Any] = {}
    params: dict[str, str] = {}
    paths: dict[str, str] = {}
    results: dict[str, str] = {}
    for name, binding in task.inputs.items():
        if isinstance(binding, Param):
            params[name] = binding.name
        elif isinstance(binding, Ref) and binding.output is not None:
            paths[name] = f"{run_root}/{binding.task}/{binding.output}"
        elif isinstance(binding, Ref):
            results[name] = f"{run_root}/{binding.task}/result.json"
        elif not isinstance(binding, Part):
            values[name] = binding
    fn = task.step.fn
    spec: dict[str, Any] = {
        "module": fn.__module__,
        "qualname": fn.__qualname__,
        "sys_path": step_module_path(fn),
        "values": values,
        "params": params,
        "paths": paths,
        "results": results,
        "outputs": {o: f"{run_root}/{task.name}/{o}" for o in task.step.outputs},
        "result": f"{run_root}/{task.name}/result.json",
    }
    handed = parts_spec(parts, task)
    if handed is not None:
        spec["parts"] = handed
    return spec


def used_params(pipeline: Pipeline) -> set[str]:
    return {
        b.name for t in pipeline.tasks.values() for b in t.inputs.values() if isinstance(b, Param)
    }


def unset_params(pipeline: Pipeline, params: Mapping[str, Any] | None = None) -> list[str]:
    """The parameters with neither a default nor a value in ``params``: set them in the
    ConfigMap before the Jobs can start."""
    return sorted(used_params(pipeline) - {*pipeline.defaults, *(params or {})})


def params_config_map(pipeline: Pipeline) -> str:
    return dns_name(pipeline.name, "params")


def build_jobs(
    pipeline: Pipeline,
    image: str,
    *,
    params: Mapping[str, Any] | None = None,
    run: str = "default",
    namespace: str | None = None,
    workspace_claim: str = "perfml-workspace",
    secret: str = "perfml-secrets",
    parts: PartsSource | None = None,
) -> list[dict[str, Any]]:
    """A ConfigMap of the run's parameters, then one ``batch/v1`` Job per task of
    ``pipeline``, in dependency order.

    The ConfigMap holds each parameter as JSON (defaults, overridden by ``params``); one with
    no value (:func:`unset_params`) is left out, and the Jobs that need it wait, like a
    missing secret, until it is set. ``run`` names the run (artifacts go to
    ``/workspace/runs/<run>/``); needed env vars come from keys of the same name in the
    Secret ``secret``; a needed path ``/data/fleet`` from the claim ``perfml-data-fleet``.
    A task bound to a part of the workspace opens it in its pod from ``parts``.
    """
    check_parts(pipeline, parts)
    for name in used_params(pipeline):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InvalidPipelineError(pipeline.name, f"parameter {name!r} is not an env name")
    values = {**pipeline.defaults, **(params or {})}
    metadata: dict[str, Any] = {
        "name": params_config_map(pipeline),
        "labels": {
            "app.kubernetes.io/name": "perfml",
            f"{LABEL_PREFIX}/pipeline": label_value(pipeline.name),
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {k: json.dumps(values[k]) for k in sorted(used_params(pipeline)) if k in values},
    }
    run_root = f"{WORKSPACE}/runs/{run}"
    return [config_map] + [
        _job(
            pipeline,
            pipeline.tasks[name],
            position,
            image,
            run,
            run_root,
            namespace,
            workspace_claim,
            secret,
            parts,
        )
        for position, name in enumerate(pipeline.order)
    ]


def _job(
    pipeline: Pipeline,
    task: Task,
    position: int,
    image: str,
    run: str,
    run_root: str,
    namespace: str | None,
    workspace_claim: str,
    secret: str,
    parts: PartsSource | None,
) -> dict[str, Any]:
    step = task.step
    labels = {
        "app.kubernetes.io/name": "perfml",
        "app.kubernetes.io/component": "pipeline-step",
        f"{LABEL_PREFIX}/pipeline": label_value(pipeline.name),
        f"{LABEL_PREFIX}/task": label_value(task.name),
        f"{LABEL_PREFIX}/step": label_value(step.name),
        f"{LABEL_PREFIX}/run": label_value(run),
    }
    claims = {path: dns_name("perfml", path) for path in step.needs.paths}
    annotations = {
        f"{LABEL_PREFIX}/pipeline": pipeline.name,
        f"{LABEL_PREFIX}/task": task.name,
        f"{LABEL_PREFIX}/step": step.name,
        f"{LABEL_PREFIX}/order": str(position),
        f"{LABEL_PREFIX}/depends-on": ",".join(
            dns_name(pipeline.name, t) for t in sorted(task.upstream())
        ),
        f"{LABEL_PREFIX}/code-version": step.code_version,
        f"{LABEL_PREFIX}/retry-backoff-seconds": f"{step.backoff:g}",
    }
    if step.timeout is not None:
        annotations[f"{LABEL_PREFIX}/timeout-seconds"] = f"{step.timeout:g}"
    if claims:
        annotations[f"{LABEL_PREFIX}/volumes"] = json.dumps(claims, sort_keys=True)
    mounts = [{"name": "workspace", "mountPath": WORKSPACE}]
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": workspace_claim}}
    ]
    for index, (path, claim) in enumerate(sorted(claims.items())):
        mounts.append({"name": f"needs-{index}", "mountPath": path})
        volumes.append({"name": f"needs-{index}", "persistentVolumeClaim": {"claimName": claim}})
    config_map = params_config_map(pipeline)
    env = [
        {
            "name": f"{PARAM_ENV}{b.name}",
            "valueFrom": {"configMapKeyRef": {"name": config_map, "key": b.name}},
        }
        for b in task.inputs.values()
        if isinstance(b, Param)
    ] + [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name}}}
        for name in step.needs.env
    ]
    memory = memory_quantity(step.resources)
    container: dict[str, Any] = {
        "name": "step",
        "image": image,
        "command": ["python", "-m", "perfml.pipelines.kubernetes"],
        "args": [json.dumps(_task_spec(task, run_root, parts), sort_keys=True)],
        "resources": {
            "requests": {"cpu": cpu_quantity(step.resources), "memory": memory},
            "limits": {"memory": memory},
        },
        "volumeMounts": mounts,
    }
    if env:
        container["env"] = env
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": step.retries,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": "step",
                        "operator": "In",
                        "values": [PERMANENT_EXIT],
                    },
                }
            ]
        },
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if step.timeout is not None:
        pod_spec["activeDeadlineSeconds"] = math.ceil(step.timeout)
        job_spec["activeDeadlineSeconds"] = job_deadline(step.timeout, step.retries)
    metadata: dict[str, Any] = {
        "name": dns_name(pipeline.name, task.name),
        "labels": labels,
        "annotations": annotations,
    }
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def compile_jobs(pipeline: Pipeline, path: Path, image: str, **options: Any) -> Path:
    """Write :func:`build_jobs` to ``path`` as multi-document YAML (``kubectl apply -f``)."""
    jobs = build_jobs(pipeline, image, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(jobs, sort_keys=False))
    return path


def main(argv: list[str]) -> int:
    """Run one Job's task: read upstream return values, then run the step in a worker."""
    spec = json.loads(argv[0])
    values = dict(spec["values"])
    for name, param in spec["params"].items():
        values[name] = json.loads(os.environ[f"{PARAM_ENV}{param}"])
    for name, result in spec["results"].items():
        values[name] = json.loads(Path(result).read_text())["value"]
    with tempfile.TemporaryDirectory(prefix="perfml-step-") as scratch:
        spec_path = Path(scratch) / "spec.json"
        spec_path.write_text(
            json.dumps(
                {
                    "module": spec["module"],
                    "qualname": spec["qualname"],
                    "sys_path": spec["sys_path"],
                    "values": values,
                    "paths": spec["paths"],
                    "outputs": spec["outputs"],
                    "result": spec["result"],
                    "parts": spec.get("parts"),
                }
            )
        )
        Path(spec["result"]).parent.mkdir(parents=True, exist_ok=True)
        code = worker.main([str(spec_path)])
    if code != 0 and worker.read_failure(Path(spec["result"])) is not None:
        return PERMANENT_EXIT
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
