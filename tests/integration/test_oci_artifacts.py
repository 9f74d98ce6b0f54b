"""The OCI artifact store against a real registry (Docker Distribution) on loopback: pushes,
pulls by digest, idempotence, refusals, tampering, deletes, TLS; and its URIs, without one."""

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration.services import OciRegistry, StartOciRegistry, free_port

from perfml.registry.artifacts import sha256_of
from perfml.registry.errors import (
    ArtifactAuthError,
    ArtifactIntegrityError,
    ArtifactStoreError,
    InvalidNameError,
    NotFoundError,
)
from perfml.registry.oci import (
    ANNOTATION_MODEL,
    ANNOTATION_SHA256,
    MANIFEST_MEDIA_TYPE,
    MODEL_ARTIFACT_TYPE,
    MODEL_LAYER_MEDIA_TYPE,
    OciArtifactStore,
    OciReference,
    OciUriError,
)

USER = ("perfml", "correct horse battery staple")
DIGEST_64 = "0123456789abcdef" * 4


def model_file(directory: Path, name: str = "model.zip", size: int = 64 * 1024) -> Path:
    """A file of ``size`` reproducible, incompressible-looking bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    seed = name.encode()
    blocks = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(size // 32 + 1))
    path.write_bytes(b"".join(blocks)[:size])
    return path


def store_for(registry: OciRegistry, **options: Any) -> OciArtifactStore:
    if registry.auth is not None and "username" not in options:
        options["username"], options["password"] = registry.auth
    if registry.ca_path is not None:
        options.setdefault("ca_bundle", registry.ca_path)
    else:
        options.setdefault("insecure", True)
    return OciArtifactStore(registry.address, **options)


@pytest.fixture
def registry(start_oci_registry: StartOciRegistry) -> OciRegistry:
    return start_oci_registry()


@pytest.mark.integration
def test_push_then_pull_by_digest_gives_the_same_bytes(registry: OciRegistry, tmp_path: Path):
    source = model_file(tmp_path / "in")
    digest = sha256_of(source)
    store = store_for(registry)

    uri = store.put(source, digest, "cpu-anomaly")
    dest = store.fetch(uri, digest, tmp_path / "out" / "model.zip")

    assert dest == tmp_path / "out" / "model.zip"
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.zip"]  # no temporary left


@pytest.mark.integration
def test_the_uri_pins_a_manifest_by_digest_and_the_tag_names_the_file(
    registry: OciRegistry, tmp_path: Path
):
    source = model_file(tmp_path)
    digest = sha256_of(source)

    store = store_for(registry)
    uri = store.put(source, digest, "cpu-anomaly")

    match = re.fullmatch(r"cpu-anomaly@(sha256:[0-9a-f]{64})", uri)  # relative to the store
    assert match is not None, uri
    manifest_digest = match.group(1)
    absolute = f"oci://{registry.address}/perfml/{uri}"
    assert store.where(uri) == absolute
    # the absolute URI older versions recorded is the same artifact
    assert store.fetch(absolute, digest, tmp_path / "old.zip").read_bytes() == source.read_bytes()
    by_digest = registry.get(
        f"/v2/perfml/cpu-anomaly/manifests/{manifest_digest}",
        headers={"Accept": MANIFEST_MEDIA_TYPE},
    )
    assert by_digest.status_code == 200
    assert "sha256:" + hashlib.sha256(by_digest.content).hexdigest() == manifest_digest
    manifest = json.loads(by_digest.content)
    assert manifest["artifactType"] == MODEL_ARTIFACT_TYPE
    assert manifest["annotations"] == {ANNOTATION_MODEL: "cpu-anomaly", ANNOTATION_SHA256: digest}
    [layer] = manifest["layers"]
    assert layer["mediaType"] == MODEL_LAYER_MEDIA_TYPE
    assert layer["digest"] == f"sha256:{digest}"
    assert layer["size"] == source.stat().st_size
    by_tag = registry.get(
        f"/v2/perfml/cpu-anomaly/manifests/sha256-{digest}",
        headers={"Accept": MANIFEST_MEDIA_TYPE},
    )
    assert by_tag.headers["Docker-Content-Digest"] == manifest_digest


@pytest.mark.integration
def test_pushing_the_same_file_again_gives_the_same_uri(registry: OciRegistry, tmp_path: Path):
    source = model_file(tmp_path / "a")
    copy = tmp_path / "b" / "renamed.bin"
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())
    digest = sha256_of(source)
    store = store_for(registry)

    first = store.put(source, digest, "cpu-anomaly")
    again = store.put(source, digest, "cpu-anomaly")
    from_copy = store_for(registry).put(copy, digest, "cpu-anomaly")

    assert first == again == from_copy
    tags = registry.get("/v2/perfml/cpu-anomaly/tags/list").json()["tags"]
    assert tags == [f"sha256-{digest}"]


@pytest.mark.integration
def test_another_model_name_uses_another_repository(registry: OciRegistry, tmp_path: Path):
    source = model_file(tmp_path)
    digest = sha256_of(source)
    store = store_for(registry)

    cpu = store.put(source, digest, "cpu-anomaly")
    memory = store.put(source, digest, "Memory_Leak")

    assert OciReference.parse(store.where(cpu)).repository == "perfml/cpu-anomaly"
    assert OciReference.parse(store.where(memory)).repository == "perfml/memory_leak"
    assert sorted(registry.catalog()) == ["perfml/cpu-anomaly", "perfml/memory_leak"]
    for uri in (cpu, memory):
        fetched = store.fetch(uri, digest, tmp_path / "out" / f"{hash(uri)}.zip")
        assert fetched.read_bytes() == source.read_bytes()


@pytest.mark.integration
def test_a_file_larger_than_a_chunk_goes_up_in_chunks(registry: OciRegistry, tmp_path: Path):
    source = model_file(tmp_path, size=300 * 1024 + 7)
    digest = sha256_of(source)

    chunked = store_for(registry, chunk_size=64 * 1024).put(source, digest, "big")
    fetched = store_for(registry).fetch(chunked, digest, tmp_path / "out.zip")

    assert fetched.read_bytes() == source.read_bytes()
    assert store_for(registry).put(source, digest, "big") == chunked


@pytest.mark.integration
def test_a_wrong_expected_digest_is_refused_and_nothing_written(
    registry: OciRegistry, tmp_path: Path
):
    source = model_file(tmp_path)
    store = store_for(registry)
    uri = store.put(source, sha256_of(source), "cpu-anomaly")
    dest = tmp_path / "out" / "model.zip"

    with pytest.raises(ArtifactIntegrityError) as caught:
        store.fetch(uri, DIGEST_64, dest)

    assert caught.value.expected == DIGEST_64
    assert caught.value.actual == sha256_of(source)
    assert not dest.exists()


@pytest.mark.integration
def test_bytes_tampered_with_in_the_registry_are_refused(registry: OciRegistry, tmp_path: Path):
    source = model_file(tmp_path)
    digest = sha256_of(source)
    store = store_for(registry)
    uri = store.put(source, digest, "cpu-anomaly")
    blob = registry.blob_path(digest)
    tampered = bytearray(blob.read_bytes())
    tampered[100] ^= 0xFF
    blob.write_bytes(bytes(tampered))
    dest = tmp_path / "out" / "model.zip"

    with pytest.raises(ArtifactIntegrityError) as caught:
        store.fetch(uri, digest, dest)

    assert caught.value.actual == hashlib.sha256(tampered).hexdigest()
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


@pytest.mark.integration
def test_a_file_that_does_not_match_its_digest_is_not_stored(registry: OciRegistry, tmp_path: Path):
    source = model_file(tmp_path)
    claimed = hashlib.sha256(b"something else").hexdigest()

    with pytest.raises(ArtifactIntegrityError) as caught:
        store_for(registry).put(source, claimed, "cpu-anomaly")

    assert (caught.value.expected, caught.value.actual) == (claimed, sha256_of(source))
    assert registry.catalog() == []


@pytest.mark.integration
def test_wrong_credentials_are_refused_at_once_and_nothing_is_stored(
    start_oci_registry: StartOciRegistry, tmp_path: Path
):
    registry = start_oci_registry(basic_auth=USER)
    source = model_file(tmp_path)
    digest = sha256_of(source)
    wrong = store_for(registry, username="perfml", password="wrong password")

    started = time.monotonic()
    with pytest.raises(ArtifactAuthError) as caught:
        wrong.put(source, digest, "cpu-anomaly")

    assert time.monotonic() - started < 5  # no retry loop
    message = str(caught.value)
    assert registry.address in message
    assert "perfml/cpu-anomaly" in message
    assert "'perfml'" in message
    assert "wrong password" not in message
    assert "\n" not in message
    assert registry.catalog() == []
    with pytest.raises(ArtifactAuthError, match="anonymous"):
        OciArtifactStore(registry.address, insecure=True).put(source, digest, "cpu-anomaly")
    assert registry.catalog() == []

    right = store_for(registry)
    uri = right.put(source, digest, "cpu-anomaly")
    assert right.fetch(uri, digest, tmp_path / "out.zip").read_bytes() == source.read_bytes()
    with pytest.raises(ArtifactAuthError):
        wrong.fetch(uri, digest, tmp_path / "denied.zip")
    assert not (tmp_path / "denied.zip").exists()


@pytest.mark.integration
def test_bearer_tokens_as_from_harbor_are_fetched_for_each_repository_and_access(
    start_oci_registry: StartOciRegistry, tmp_path: Path
):
    registry = start_oci_registry(token_auth=USER)
    assert registry.token_server is not None
    source = model_file(tmp_path)
    digest = sha256_of(source)
    store = store_for(registry)

    cpu = store.put(source, digest, "cpu-anomaly")
    memory = store.put(source, digest, "memory-leak")

    for uri in (cpu, memory):
        fetched = store.fetch(uri, digest, tmp_path / "out" / f"{hash(uri)}.zip")
        assert fetched.read_bytes() == source.read_bytes()
    # A token scoped to pull, or to another repository, was refused and replaced.
    # (The registry names a scope's actions in no fixed order: compare them as sets.)
    scopes = {
        (scope.rsplit(":", 1)[0], frozenset(scope.rsplit(":", 1)[1].split(",")))
        for scope in registry.token_server.scopes
    }
    assert ("repository:perfml/cpu-anomaly", frozenset({"pull"})) in scopes
    assert ("repository:perfml/cpu-anomaly", frozenset({"pull", "push"})) in scopes
    assert ("repository:perfml/memory-leak", frozenset({"pull", "push"})) in scopes
    assert sorted(registry.catalog()) == ["perfml/cpu-anomaly", "perfml/memory-leak"]
    wrong = store_for(registry, username=USER[0], password="wrong password")
    started = time.monotonic()
    with pytest.raises(ArtifactAuthError, match="perfml/other"):
        wrong.put(source, digest, "other")
    assert time.monotonic() - started < 5
    assert "perfml/other" not in registry.catalog()


@pytest.mark.integration
def test_a_deleted_artifact_is_not_found_and_deleting_again_is_fine(
    registry: OciRegistry, tmp_path: Path
):
    source = model_file(tmp_path)
    digest = sha256_of(source)
    store = store_for(registry)
    uri = store.put(source, digest, "cpu-anomaly")

    store.delete(uri)

    with pytest.raises(NotFoundError, match="deleted"):
        store.fetch(uri, digest, tmp_path / "out.zip")
    store.delete(uri)
    tag = registry.get(f"/v2/perfml/cpu-anomaly/manifests/sha256-{digest}")
    assert tag.status_code == 404
    assert store.put(source, digest, "cpu-anomaly") == uri  # and it can come back


@pytest.mark.integration
def test_a_registry_without_deletes_says_so(start_oci_registry: StartOciRegistry, tmp_path: Path):
    registry = start_oci_registry(delete_enabled=False)
    source = model_file(tmp_path)
    store = store_for(registry)
    uri = store.put(source, sha256_of(source), "cpu-anomaly")

    with pytest.raises(ArtifactStoreError, match="does not allow deletes"):
        store.delete(uri)


@pytest.mark.integration
def test_tls_with_the_registry_ca_and_credentials(
    start_oci_registry: StartOciRegistry, tmp_path: Path
):
    registry = start_oci_registry(basic_auth=USER, tls=True)
    source = model_file(tmp_path)
    digest = sha256_of(source)

    uri = store_for(registry).put(source, digest, "cpu-anomaly")

    fetched = store_for(registry).fetch(uri, digest, tmp_path / "out.zip")
    assert fetched.read_bytes() == source.read_bytes()
    untrusting = OciArtifactStore(registry.address, username=USER[0], password=USER[1])
    with pytest.raises(ArtifactStoreError, match="TLS") as caught:
        untrusting.fetch(uri, digest, tmp_path / "untrusted.zip")
    assert not isinstance(caught.value, ArtifactAuthError)


def test_an_unreachable_registry_fails_fast(tmp_path: Path):
    source = model_file(tmp_path)
    store = OciArtifactStore(f"127.0.0.1:{free_port()}", insecure=True, timeout=2)

    started = time.monotonic()
    with pytest.raises(ArtifactStoreError, match="cannot reach the registry") as caught:
        store.put(source, sha256_of(source), "cpu-anomaly")

    assert time.monotonic() - started < 5
    assert not isinstance(caught.value, ArtifactAuthError)


GOOD = "oci://registry.example.com:5000/perfml/cpu-anomaly@sha256:" + "ab" * 32


def test_a_uri_reads_back_into_its_parts():
    reference = OciReference.parse(GOOD)

    assert reference == OciReference(
        "registry.example.com:5000", "perfml/cpu-anomaly", "sha256:" + "ab" * 32
    )
    assert str(reference) == GOOD


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("file:///srv/artifacts/sha256/ab/" + "ab" * 32, "expected oci://"),
        ("registry.example.com/perfml/cpu@sha256:" + "ab" * 32, "expected oci://"),
        ("oci://registry.example.com/perfml/cpu:sha256-" + "ab" * 32, "a tag is not a pin"),
        ("oci://registry.example.com/perfml/cpu", "a tag is not a pin"),
        ("oci://registry.example.com/perfml/cpu@sha256:" + "ab" * 31, "not sha256:<64"),
        ("oci://registry.example.com/perfml/cpu@sha256:" + "AB" * 32, "not sha256:<64"),
        ("oci://registry.example.com/perfml/cpu@sha512:" + "ab" * 64, "not sha256:<64"),
        ("oci://registry.example.com/perfml/CPU@sha256:" + "ab" * 32, "not an OCI repository"),
        ("oci://registry.example.com/perfml//cpu@sha256:" + "ab" * 32, "not an OCI repository"),
        ("oci://registry.example.com/@sha256:" + "ab" * 32, "not an OCI repository"),
        ("oci:///perfml/cpu@sha256:" + "ab" * 32, "not a host"),
        ("oci://bad_host!/perfml/cpu@sha256:" + "ab" * 32, "not a host"),
    ],
)
def test_a_malformed_uri_is_refused_with_the_reason(uri: str, problem: str):
    with pytest.raises(OciUriError) as caught:
        OciReference.parse(uri)

    assert caught.value.uri == uri
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [
        "oci://elsewhere.example.com/perfml/cpu-anomaly@sha256:" + "ab" * 32,
        "oci://registry.example.com:5000/other-team/cpu-anomaly@sha256:" + "ab" * 32,
        "oci://registry.example.com:5000/perfml@sha256:" + "ab" * 32,
    ],
)
def test_a_uri_of_another_registry_or_prefix_is_not_touched(uri: str, tmp_path: Path):
    # No registry listens at registry.example.com: the store refuses before any request.
    store = OciArtifactStore("registry.example.com:5000", username="u", password="p", timeout=1)

    with pytest.raises(OciUriError, match="not one of this store's"):
        store.fetch(uri, "ab" * 32, tmp_path / "out.zip")
    with pytest.raises(OciUriError, match="not one of this store's"):
        store.delete(uri)


def test_model_names_map_to_valid_repositories():
    store = OciArtifactStore("registry.example.com", "team/perfml")

    assert store.repository_for("cpu-anomaly") == "team/perfml/cpu-anomaly"
    assert store.repository_for("CPU.Anomaly_v2") == "team/perfml/cpu.anomaly_v2"
    assert store.repository_for("a._b--c__d-") == "team/perfml/a-b--c__d"
    with pytest.raises(InvalidNameError):
        store.repository_for("../escape")


def test_a_bad_configuration_is_refused():
    with pytest.raises(ArtifactStoreError, match="repository prefix"):
        OciArtifactStore("registry.example.com", "Perfml")
    with pytest.raises(ArtifactStoreError, match="host"):
        OciArtifactStore("https://registry.example.com")
    with pytest.raises(ArtifactStoreError, match="one or the other"):
        OciArtifactStore("127.0.0.1:5000", insecure=True, ca_bundle=os.devnull)
    with pytest.raises(ArtifactStoreError, match="both username and password"):
        OciArtifactStore("127.0.0.1:5000", username="perfml")


@pytest.mark.parametrize("uri", ["../other-team/cpu@sha256:" + "ab" * 32, "cpu:latest"])
def test_a_relative_uri_cannot_leave_the_stores_prefix(uri: str, tmp_path: Path):
    store = OciArtifactStore("registry.example.com:5000", username="u", password="p", timeout=1)

    with pytest.raises(OciUriError):
        store.fetch(uri, "ab" * 32, tmp_path / "out.zip")
