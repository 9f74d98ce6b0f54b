"""Step outputs kept by content: a step with ``cache=True`` whose code version and inputs
(values as JSON, artifacts by the sha256 of their bytes) match an earlier successful run
gets that run's outputs copied into its workspace instead of running again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perfml.pipelines.dsl import StepDefinition


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class StepCache:
    """Outputs by cache key under ``root`` (``root/KEY/outputs/NAME`` and ``value.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(step: StepDefinition, values: Mapping[str, Any], paths: Mapping[str, Path]) -> str:
        """The hash of the step's name and code version and of its inputs' content."""
        identity = {
            "step": step.name,
            "code": step.code_version,
            "values": values,
            "artifacts": {name: file_sha256(p) for name, p in sorted(paths.items())},
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def restore(self, key: str, outputs: Mapping[str, Path]) -> tuple[bool, Any]:
        """Copy the cached outputs to ``outputs``; ``(True, value)`` on a hit."""
        entry = self.root / key
        value_file = entry / "value.json"
        if not value_file.exists():
            return False, None
        for name, target in outputs.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry / "outputs" / name, target)
        return True, json.loads(value_file.read_text())["value"]

    def store(self, key: str, outputs: Mapping[str, Path], value: Any) -> None:
        """Keep a successful attempt's outputs; ``value.json`` is written last, atomically,
        so a half-stored entry is never a hit."""
        entry = self.root / key
        (entry / "outputs").mkdir(parents=True, exist_ok=True)
        for name, source in outputs.items():
            shutil.copy2(source, entry / "outputs" / name)
        partial = entry / "value.json.partial"
        partial.write_text(json.dumps({"value": value}))
        os.replace(partial, entry / "value.json")
