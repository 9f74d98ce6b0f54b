"""A workspace copied to another path (another checkout, a volume mounted elsewhere) serves its
models: the registry records artifact URIs relative to the artifact store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import update

from perfml.config import Settings
from perfml.registry.artifacts import FilesystemArtifactStore
from perfml.registry.detector_versions import register_detector
from perfml.registry.errors import ArtifactStoreError
from perfml.registry.tables import versions
from perfml.serving.telemetry import MULTIPROC_ENV
from perfml.workspace import Workspace
from serving.support import TOKEN, TestClient, infer_body, static_model


def make_workspace(root: Path) -> str:
    """A workspace at ``root`` whose ``cpu@production`` is a registered version; its URI."""
    with Workspace(Settings(workspace=root)) as workspace:
        registry = workspace.registry(background_delivery=False)
        version = register_detector(registry, "cpu", static_model(0.0), features=["cpu_util"])
        registry.set_alias("cpu", "production", version.version)
        return version.artifact_uri


def served_score(root: Path) -> float:
    with (
        Workspace(Settings(workspace=root)) as workspace,
        TestClient(workspace.serving_app(["cpu@production"])) as client,
    ):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/v2/models/cpu/ready", headers=auth).status_code == 200
        answer = client.post("/v2/models/cpu/infer", json=infer_body([3.0]), headers=auth)
        assert answer.status_code == 200, answer.text
        score: float = answer.json()["outputs"][0]["data"][0]
        return score


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setenv(Settings().serving.token_env, TOKEN)


def test_a_copied_workspace_serves_its_production_model(tmp_path: Path) -> None:
    first = tmp_path / "first"
    uri = make_workspace(first)
    assert not uri.startswith("file:")
    assert str(first) not in uri
    moved = tmp_path / "elsewhere" / "restored"
    shutil.copytree(first, moved)
    shutil.rmtree(first)  # nothing of the old path is left to read from
    assert served_score(moved) == 0.5


def test_an_absolute_uri_recorded_before_still_resolves_after_a_move(tmp_path: Path) -> None:
    first = tmp_path / "first"
    uri = make_workspace(first)
    with Workspace(Settings(workspace=first)) as workspace:  # as older versions recorded it
        old = f"file://{first / 'artifacts' / uri}"
        with workspace.metadata().writer.begin() as con:
            con.execute(update(versions).values(artifact_uri=old))
        assert workspace.registry().get("cpu:1").artifact_uri == old
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    assert served_score(moved) == 0.5


@pytest.mark.parametrize(
    "uri",
    [
        "../../etc/passwd",
        "sha256/ab/" + "cd" * 32,  # the folder is not the digest's first two hex digits
        "file:///somewhere/models/model.zip",
        "s3://bucket/sha256/ab/" + "ab" * 32,
    ],
)
def test_a_uri_that_is_not_the_stores_is_refused_naming_it(tmp_path: Path, uri: str) -> None:
    store = FilesystemArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ArtifactStoreError, match="is not one of this store's") as refused:
        store.fetch(uri, "ab" * 32, tmp_path / "out")
    assert repr(uri) in str(refused.value)
    with pytest.raises(ArtifactStoreError):
        store.delete(uri)
