"""Steps and pipelines: plain functions declared with ``@step``, wired into a checked DAG.

A step is a function. Its parameters are its inputs; an input bound to another task's
artifact arrives as a :class:`~pathlib.Path` to read, one bound to a :class:`Part` of the
workspace (the feature store, the registry) as that object, any other by value (JSON). The
names in ``outputs=`` are artifacts the step writes: each arrives as a ``Path`` argument to
write to, inside the run's workspace. The return value is the step's small output, passed by
value (it must be JSON). Everything is checked when it is declared, not when it runs::

    @step(outputs=("table",), retries=2, timeout=60)
    def extract(rows: int, table: Path) -> int:
        table.write_text("\\n".join(map(str, range(rows))))
        return rows

    @step(cache=True)
    def total(table: Path, scale: int) -> int:
        return scale * sum(int(x) for x in table.read_text().split())

    training = Pipeline("demo", [
        Task("extract", extract, {"rows": Param("rows")}),
        Task("total", total, {"table": Ref("extract", "table"), "scale": Ref("extract")}),
    ])

>>> Resources(cpu=0.5, memory="1Gi").memory_bytes
1073741824
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfml.pipelines.errors import (
    CycleError,
    InvalidPipelineError,
    InvalidResourcesError,
    InvalidStepError,
    MissingInputError,
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(|k|M|G|Ki|Mi|Gi)$")


def parse_memory(value: str | int) -> int:
    """Bytes in a Kubernetes memory quantity: ``512Mi``, ``2G``, ``1048576``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidResourcesError("memory", value, "must be more than 0 bytes")
        return value
    match = _QUANTITY.match(str(value))
    if match is None or float(match.group(1)) <= 0:
        raise InvalidResourcesError(
            "memory", value, "must be a positive quantity such as 512Mi, 2Gi or 1G"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class Resources:
    """CPUs and memory a job requests (and, for memory, may not exceed)."""

    cpu: float = 1.0
    memory: str | int = "512Mi"

    def __post_init__(self) -> None:
        if isinstance(self.cpu, bool) or not isinstance(self.cpu, int | float) or self.cpu <= 0:
            raise InvalidResourcesError("cpu", self.cpu, "must be a number of CPUs above 0")
        parse_memory(self.memory)

    @property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory)


@dataclass(frozen=True)
class Preconditions:
    """What must exist before a job may start: paths (volumes, files) and environment
    variables (secrets). While one is missing the job stays Pending (PreconditionMissing)."""

    paths: tuple[str, ...] = ()
    env: tuple[str, ...] = ()

    def missing(self, environ: Mapping[str, str]) -> list[str]:
        """The preconditions not met now, as ``path /x`` or ``env NAME``."""
        gone = [f"path {p}" for p in self.paths if not Path(p).exists()]
        return gone + [f"env {name}" for name in self.env if not environ.get(name)]


@dataclass(frozen=True)
class StepDefinition:
    """A validated step: the function and how to run it. Made by :func:`step`."""

    name: str
    fn: Callable[..., Any]
    outputs: tuple[str, ...] = ()
    retries: int = 0
    backoff: float = 1.0
    timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    cache: bool = False
    needs: Preconditions = field(default_factory=Preconditions)
    code_version: str = ""
    """Part of the cache key: by default a hash of the function's source."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The function's parameters that are not outputs."""
        params = inspect.signature(self.fn).parameters
        return tuple(name for name in params if name not in self.outputs)

    @property
    def required_inputs(self) -> tuple[str, ...]:
        params = inspect.signature(self.fn).parameters
        return tuple(n for n in self.inputs if params[n].default is inspect.Parameter.empty)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain function (in tests, or inside a worker)."""
        return self.fn(*args, **kwargs)


def _check_step(name: str, fn: Callable[..., Any], definition: dict[str, Any]) -> None:
    def bad(option: str, rule: str) -> InvalidStepError:
        return InvalidStepError(name, option, definition[option], rule)

    retries, backoff, timeout = definition["retries"], definition["backoff"], definition["timeout"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise bad("retries", "must be an integer 0 or more")
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
        raise bad("backoff", "must be 0 or more seconds")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise bad("timeout", "must be None or more than 0 seconds")
    if not isinstance(definition["resources"], Resources):
        raise bad("resources", "must be a Resources(cpu=..., memory=...)")
    if not isinstance(definition["needs"], Preconditions):
        raise bad("needs", "must be a Preconditions(paths=..., env=...)")
    params = inspect.signature(fn).parameters
    for output in definition["outputs"]:
        if output not in params:
            raise bad("outputs", f"{output!r} is not a parameter of {fn.__qualname__}")
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values()):
        raise InvalidStepError(name, "fn", fn.__qualname__, "*args and **kwargs are not allowed")
    if "<locals>" in fn.__qualname__:
        raise InvalidStepError(
            name, "fn", fn.__qualname__, "must be defined at module level, to run in a worker"
        )


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    outputs: Iterable[str] = (),
    retries: int = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    resources: Resources | None = None,
    cache: bool = False,
    needs: Preconditions | None = None,
    code_version: str | None = None,
) -> Any:
    """Declare a function a step; returns a :class:`StepDefinition`, checked now.

    ``retries`` more attempts after a failure, waiting ``backoff * 2**(attempt-1)`` seconds;
    ``timeout`` seconds per attempt (then the process tree is killed); ``resources`` the CPUs
    and memory requested (memory is also a limit); ``cache`` reuses the outputs of an earlier
    run with the same code version and inputs; ``needs`` the paths and env vars it needs.
    """

    def define(function: Callable[..., Any]) -> StepDefinition:
        step_name = name or function.__name__
        if not _NAME.match(step_name):
            raise InvalidStepError(step_name, "name", step_name, "letters, digits, _ and -")
        options: dict[str, Any] = {
            "outputs": tuple(outputs),
            "retries": retries,
            "backoff": backoff,
            "timeout": timeout,
            "resources": resources or Resources(),
            "cache": cache,
            "needs": needs or Preconditions(),
        }
        _check_step(step_name, function, options)
        version = (
            code_version or hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]
        )
        return StepDefinition(name=step_name, fn=function, code_version=version, **options)

    return define if fn is None else define(fn)


@dataclass(frozen=True)
class Param:
    """An input bound to a run parameter (``runner.run(pipeline, params={...})``)."""

    name: str


@dataclass(frozen=True)
class Ref:
    """An input bound to another task's output: an artifact by name (a path), or with
    ``output=None`` the task's return value."""

    task: str
    output: str | None = None


@dataclass(frozen=True)
class Part:
    """An input bound to a part of the workspace the job runs in, by the part's name
    (``"store"``, ``"registry"``…): opened in the job's own process from the runner's
    :class:`~perfml.pipelines.parts.PartsSource` and handed to the step as an object, so that a
    step takes the parts it uses, not where to find them."""

    name: str


Binding = Param | Ref | Part | Any
"""What an input is bound to: a :class:`Param`, a :class:`Ref`, a :class:`Part`, or a literal
JSON value."""


@dataclass(frozen=True)
class Task:
    """One use of a step in a pipeline, under a name unique in it, its inputs bound."""

    name: str
    step: StepDefinition
    inputs: Mapping[str, Binding] = field(default_factory=dict)

    def upstream(self) -> set[str]:
        return {b.task for b in self.inputs.values() if isinstance(b, Ref)}


class Pipeline:
    """A named DAG of tasks, checked when built: names unique, every required input bound,
    every reference to an existing task and output, no cycle. ``order`` is a topological
    order of task names."""

    def __init__(
        self, name: str, tasks: Sequence[Task], params: Mapping[str, Any] | None = None
    ) -> None:
        if not _NAME.match(name):
            raise InvalidPipelineError(name, "name must be letters, digits, _ and -")
        self.name = name
        self.defaults: dict[str, Any] = dict(params or {})
        self.tasks: dict[str, Task] = {}
        for task in tasks:
            if not _NAME.match(task.name):
                raise InvalidPipelineError(name, f"task name {task.name!r} is not valid")
            if task.name in self.tasks:
                raise InvalidPipelineError(name, f"two tasks are named {task.name!r}")
            self.tasks[task.name] = task
        for task in tasks:
            self._check_inputs(task)
        self.order: tuple[str, ...] = self._topological_order()

    def _check_inputs(self, task: Task) -> None:
        for required in task.step.required_inputs:
            if required not in task.inputs:
                raise MissingInputError(self.name, task.name, required, "is not bound")
        for input_name, binding in task.inputs.items():
            if input_name not in task.step.inputs:
                raise MissingInputError(
                    self.name, task.name, input_name, f"{task.step.name} has no such input"
                )
            if not isinstance(binding, Ref):
                continue
            source = self.tasks.get(binding.task)
            if source is None:
                raise MissingInputError(
                    self.name, task.name, input_name, f"no task named {binding.task!r}"
                )
            if binding.output is not None and binding.output not in source.step.outputs:
                raise MissingInputError(
                    self.name,
                    task.name,
                    input_name,
                    f"task {binding.task!r} has no output {binding.output!r}"
                    f" (it has {', '.join(source.step.outputs) or 'none'})",
                )

    def _topological_order(self) -> tuple[str, ...]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 on the current path, 2 done
        path: list[str] = []

        def visit(name: str) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise CycleError(self.name, [*path[path.index(name) :], name])
            state[name] = 1
            path.append(name)
            for upstream in sorted(self.tasks[name].upstream()):
                visit(upstream)
            path.pop()
            state[name] = 2
            order.append(name)

        for name in self.tasks:
            visit(name)
        return tuple(order)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, tasks={list(self.order)})"
