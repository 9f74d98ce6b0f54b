"""The model registry with its artifacts in a real OCI registry, configured as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest

import fixtures.detectors  # noqa: F401  (registers the toy detectors)
from fixtures.points import make_points
from fixtures.workspace import workspace_registry
from perfml.config import load_settings
from perfml.detectors import create
from perfml.registry.detector_versions import load_detector, register_detector
from perfml.registry.errors import ArtifactAuthError

pytestmark = pytest.mark.integration


def test_versions_round_trip_through_an_oci_registry_by_digest(
    start_oci_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oci = start_oci_registry(basic_auth=("ci", "s3cret"))
    config = tmp_path / "perfml.yaml"
    config.write_text(
        f"workspace: ws\nregistry:\n  artifacts: oci://{oci.address}/team\n  oci_insecure: true\n"
    )
    monkeypatch.setenv("PERFML_OCI_USERNAME", "ci")
    monkeypatch.setenv("PERFML_OCI_PASSWORD", "s3cret")
    detector = create("toy_rolling_zscore", window=16).fit(make_points(n=300))
    frame = make_points(n=50, seed=9)
    with workspace_registry(load_settings(config)) as registry:
        version = register_detector(registry, "cpu-anomaly", detector, features=["cpu_util"])
        assert version.artifact_uri.startswith("cpu-anomaly@sha256:")  # relative to the store
        where = registry.artifacts.where(version.artifact_uri)
        assert where == f"oci://{oci.address}/team/{version.artifact_uri}"
        registry.promote("cpu-anomaly", version.version)
        resolved, loaded = load_detector(registry, "cpu-anomaly@production")
        assert resolved.digest == version.digest
        assert loaded.prior.score(frame).tolist() == detector.score(frame).tolist()

    monkeypatch.setenv("PERFML_OCI_PASSWORD", "wrong")
    other = create("toy_rolling_zscore", window=8).fit(make_points(n=300))
    with (
        workspace_registry(load_settings(config)) as registry,
        pytest.raises(ArtifactAuthError, match="refused"),
    ):
        register_detector(registry, "cpu-anomaly", other, features=["cpu_util"])
    with workspace_registry(load_settings(config)) as registry:
        assert [v.version for v in registry.versions("cpu-anomaly")] == [1]  # nothing half-made
