"""The process one attempt of one job runs in: ``python -m perfml.pipelines.worker SPEC``.

``SPEC`` is a JSON file written by the runner: where to import the step from (``module``,
``qualname``, and ``sys_path`` to find modules that are not installed, such as tests), the
inputs by value (``values``) and by reference (``paths``), the artifact paths to write
(``outputs``), the parts of the workspace it is handed (``parts``: a
:class:`~perfml.pipelines.parts.PartsSource` and which input gets which part, opened only for
a step that takes one) and where to write the return value (``result``). Its stdout and
stderr are the job's log; an exception prints its traceback there and exits with code 1. A permanent
failure (:func:`perfml.errors.is_permanent`: a refused credential, a usage error) also
writes ``{"failure": {"type": ..., "message": ...}}`` to ``result``, so that the runner fails
the job at once instead of retrying it. Deliberately light: it imports nothing of perfml but
what the step itself imports (a perfml error can only be raised once ``perfml.errors`` is).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def write_spec(
    spec_path: Path,
    fn: Callable[..., Any],
    values: Mapping[str, Any],
    paths: Mapping[str, Path],
    outputs: Mapping[str, Path],
    result: Path,
    parts: Mapping[str, Any] | None = None,
) -> Path:
    """Write the spec of one attempt of ``fn`` (a module-level function); removes a stale
    ``result``, so that only this attempt's can be read."""
    module_file = Path(getattr(sys.modules[fn.__module__], "__file__", "") or ".").resolve()
    depth = fn.__module__.count(".") + 1
    spec = {
        "module": fn.__module__,
        "qualname": fn.__qualname__,
        # the folder the module is imported from, for modules that are not installed
        "sys_path": [str(module_file.parents[depth - 1])] if module_file.is_file() else [],
        "values": dict(values),
        "paths": {k: str(v) for k, v in paths.items()},
        "outputs": {k: str(v) for k, v in outputs.items()},
        "result": str(result),
    }
    if parts:
        spec["parts"] = dict(parts)
    result.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec))
    return spec_path


def load_step(spec: dict[str, Any]) -> Any:
    """The plain function named by ``spec`` (the ``fn`` of a ``StepDefinition``)."""
    for entry in reversed(spec.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    target = resolve(spec["module"], spec["qualname"])
    return getattr(target, "fn", target)


def resolve(module: str, qualname: str) -> Any:
    """The object ``qualname`` (dotted) of ``module``, importing it."""
    target: Any = importlib.import_module(module)
    for name in qualname.split("."):
        target = getattr(target, name)
    return target


def _report_permanent(error: BaseException, result: Path) -> None:
    errors = sys.modules.get("perfml.errors")
    if errors is None or not errors.is_permanent(error):
        return
    kind = type(error)
    failure = {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(error)}
    result.write_text(json.dumps({"failure": failure}))


def read_failure(result: Path) -> dict[str, str] | None:
    """The permanent failure an attempt reported in ``result``, if it reported one."""
    try:
        failure = json.loads(result.read_text()).get("failure")
    except (OSError, ValueError, AttributeError):
        return None
    return failure if isinstance(failure, dict) else None


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        function = load_step(spec)
        kwargs: dict[str, Any] = dict(spec["values"])
        kwargs.update({name: Path(p) for name, p in spec["paths"].items()})
        for name, out in spec["outputs"].items():
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            kwargs[name] = Path(out)
        if spec.get("parts"):
            from perfml.pipelines.parts import opened_parts

            with opened_parts(spec["parts"]["source"], spec["parts"]["inputs"]) as parts:
                value = function(**kwargs, **parts)
        else:
            value = function(**kwargs)
        result = Path(spec["result"])
        partial = result.with_suffix(".partial")
        partial.write_text(json.dumps({"value": value}))
        os.replace(partial, result)
    except SystemExit as stop:
        sys.stdout.flush()
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException as error:
        traceback.print_exc()
        sys.stdout.flush()
        _report_permanent(error, Path(spec["result"]))
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
