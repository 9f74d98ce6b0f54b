"""Loading a saved detector whose kind this perfml does not ship."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfml.detectors import artifact
from perfml.detectors.base import load
from perfml.detectors.builtin import builtin_detectors
from perfml.detectors.errors import ArtifactError


def saved_model(path: Path, kind: str) -> Path:
    arrays = {"slot_values": np.zeros((168, 64))}
    artifact.write(path, kind, 1, {"season": "week"}, {"columns": ["value"]}, arrays)
    return path


def test_a_removed_kind_is_refused_with_what_to_retrain_with(tmp_path: Path) -> None:
    path = saved_model(tmp_path / "cpu.zip", "seasonal")
    with pytest.raises(ArtifactError) as caught:
        load(path, builtin_detectors())
    message = str(caught.value)
    assert "'seasonal' is not known" in message
    assert "retrain the model with 'streaming'" in message
    assert str(path) in message


def test_an_unknown_kind_is_refused_by_its_name(tmp_path: Path) -> None:
    path = saved_model(tmp_path / "cpu.zip", "prophet")
    with pytest.raises(ArtifactError, match="'prophet' is not known to this perfml") as caught:
        load(path, builtin_detectors())
    assert "retrain" not in str(caught.value)
