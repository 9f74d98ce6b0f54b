"""Model artifacts in an OCI registry (Harbor, Docker Distribution, ...), through ORAS.

Each artifact is one OCI artifact in the repository ``<prefix>/<model>``: a manifest of artifact
type :data:`MODEL_ARTIFACT_TYPE` with the OCI empty config and one layer, the model file
(:data:`MODEL_LAYER_MEDIA_TYPE`), annotated with the file's SHA-256 and the model's name. It is
tagged ``sha256-<file digest>`` for people browsing the registry, but the store addresses it
only by the digest of its manifest, in a URI that pins the exact bytes::

    oci://<registry>/<repository>@sha256:<manifest digest>

>>> ref = OciReference.parse("oci://harbor.example.com/perfml/cpu-anomaly@sha256:" + "ab" * 32)
>>> ref.registry, ref.repository
('harbor.example.com', 'perfml/cpu-anomaly')
>>> OciReference.parse("oci://harbor.example.com/perfml/cpu-anomaly:latest")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
perfml.registry.oci.OciUriError: artifact store oci://...: not an OCI artifact URI: ... not a pin)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any, Final

import oras.auth.utils
import oras.container
import oras.provider
import requests

from perfml.registry.artifacts import sha256_of, verify
from perfml.registry.errors import (
    ArtifactAuthError,
    ArtifactIntegrityError,
    ArtifactStoreError,
    NotFoundError,
)
from perfml.registry.names import check_name

# oras-py reports through this logger what our exceptions already say (its "errors" are
# registry refusals we raise on); left alone, Python's last-resort handler prints them.
logging.getLogger("oras").setLevel(logging.CRITICAL)

MODEL_ARTIFACT_TYPE: Final = "application/vnd.perfml.model.v1"
MODEL_LAYER_MEDIA_TYPE: Final = "application/vnd.perfml.model.v1+zip"
MANIFEST_MEDIA_TYPE: Final = "application/vnd.oci.image.manifest.v1+json"
ANNOTATION_MODEL: Final = "io.perfml.model.name"
ANNOTATION_SHA256: Final = "io.perfml.model.sha256"
_TITLE = "org.opencontainers.image.title"
# The OCI empty descriptor: the config of an artifact that has none (its bytes are "{}").
_EMPTY_CONFIG: Final = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}
DEFAULT_CHUNK_SIZE: Final = 16 << 20

_HEX64 = re.compile(r"[0-9a-f]{64}")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?")
_API_REPOSITORY = re.compile(r"/v2/(?P<repository>.+?)/(?:blobs|manifests|tags)/")


class OciUriError(ArtifactStoreError):
    """A URI that is not an OCI artifact URI, or not one of this store's."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(uri, reason)


@dataclass(frozen=True)
class OciReference:
    """One manifest, pinned by digest: ``oci://<registry>/<repository>@sha256:<hex>``."""

    registry: str
    repository: str
    digest: str

    @classmethod
    def parse(cls, uri: str) -> OciReference:
        """Read an artifact URI; :class:`OciUriError` says what is wrong with a bad one."""
        if not uri.startswith("oci://"):
            raise OciUriError(
                uri,
                "not an OCI artifact URI: expected "
                "oci://<registry>/<repository>@sha256:<manifest digest>",
            )
        registry, _, path = uri.removeprefix("oci://").partition("/")
        repository, at, digest = path.rpartition("@")
        if not at:
            raise OciUriError(
                uri,
                "not an OCI artifact URI: no '@sha256:<64 hex digits>' manifest digest "
                "(a tag is not a pin)",
            )
        if not _HOST.fullmatch(registry):
            raise OciUriError(uri, f"not an OCI artifact URI: {registry!r} is not a host[:port]")
        if not _REPOSITORY.fullmatch(repository):
            raise OciUriError(
                uri, f"not an OCI artifact URI: {repository!r} is not an OCI repository name"
            )
        if not (digest.startswith("sha256:") and _HEX64.fullmatch(digest[7:])):
            raise OciUriError(
                uri, f"not an OCI artifact URI: {digest!r} is not sha256:<64 hex digits>"
            )
        return cls(registry, repository, digest)

    def __str__(self) -> str:
        return f"oci://{self.registry}/{self.repository}@{self.digest}"


class OciArtifactStore:
    """Model artifacts as OCI artifacts in a registry, for teams that run one (Harbor).

    ``registry`` is ``host[:port]``; artifacts go to ``<repository_prefix>/<model>``. Credentials
    (a Harbor robot account, an htpasswd user) answer the registry's challenge, Basic or Bearer
    token, whichever it sends; they are never logged. The registry is reached over HTTPS,
    verified against the system's CAs or the ``ca_bundle`` file; ``insecure=True`` means plain
    HTTP (a registry on loopback), where credentials travel in clear. Files larger than
    ``chunk_size`` are uploaded in chunks of that size. Every request is tried once and gives up
    after ``timeout`` seconds: a refusal raises :class:`ArtifactAuthError`, any other failure
    :class:`ArtifactStoreError`.

    >>> store = OciArtifactStore("harbor.example.com", "ml/perfml", username="robot", password="x")
    >>> store.repository_for("CPU-Anomaly")
    'ml/perfml/cpu-anomaly'
    """

    scheme = "oci"

    def __init__(
        self,
        registry: str,
        repository_prefix: str = "perfml",
        *,
        username: str | None = None,
        password: str | None = None,
        insecure: bool = False,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        where = f"{self.scheme}://{registry}"
        if not _HOST.fullmatch(registry):
            raise ArtifactStoreError(where, f"{registry!r} is not a registry host[:port]")
        if not _REPOSITORY.fullmatch(repository_prefix):
            raise ArtifactStoreError(
                where, f"repository prefix {repository_prefix!r} is not an OCI repository path"
            )
        if insecure and ca_bundle is not None:
            raise ArtifactStoreError(
                where, "ca_bundle verifies TLS, insecure=True is plain HTTP: give one or the other"
            )
        if (username is None) != (password is None):
            raise ArtifactStoreError(where, "give both username and password, or neither")
        self.registry = registry
        self.repository_prefix = repository_prefix
        self.chunk_size = chunk_size
        self._where = where
        self._client = _RegistryClient(
            registry,
            insecure=insecure,
            tls_verify=str(ca_bundle) if ca_bundle is not None else True,
            timeout=timeout,
            username=username,
            password=password,
        )

    def repository_for(self, name: str) -> str:
        """The repository of the model ``name``: ``<prefix>/<name>`` lower-cased, with runs of
        separators OCI does not allow folded to ``-``. Two names may share a repository (``CPU``
        and ``cpu``), which is harmless: artifacts are addressed by digest, never by name."""
        check_name("model", name)

        def fold(separators: re.Match[str]) -> str:
            run = separators.group()
            return run if run in (".", "_", "__") or set(run) == {"-"} else "-"

        segment = re.sub(r"[._-]+", fold, name.lower()).rstrip("._-")
        return f"{self.repository_prefix}/{segment}"

    def put(self, path: Path, digest: str, name: str) -> str:
        """Push ``path`` as ``<prefix>/<name>:sha256-<digest>``; returns the URI pinning its
        manifest, relative to the store (``<name>@sha256:<manifest digest>``). The registry
        checks the bytes against ``digest`` on upload
        (:class:`ArtifactIntegrityError` if they differ). The manifest depends only on
        ``digest``, the size and ``name``, so pushing again is one request that changes
        nothing and returns the same URI."""
        if not _HEX64.fullmatch(digest):
            raise ArtifactStoreError(self._where, f"{digest!r} is not a sha256 hex digest")
        repository = self.repository_for(name)
        container = self._client.container(repository)
        size = path.stat().st_size
        layer = {
            "mediaType": MODEL_LAYER_MEDIA_TYPE,
            "digest": f"sha256:{digest}",
            "size": size,
            "annotations": {_TITLE: f"{name}.zip"},
        }
        # No creation time among the annotations: the same file must give the same manifest.
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": MODEL_ARTIFACT_TYPE,
            "config": _EMPTY_CONFIG,
            "layers": [layer],
            "annotations": {ANNOTATION_MODEL: name, ANNOTATION_SHA256: digest},
        }
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        reference = OciReference(
            self.registry, repository, "sha256:" + hashlib.sha256(body).hexdigest()
        )
        manifest_url = self._client.manifest_url(container, f"sha256-{digest}")
        existing = self._client.do_request(
            manifest_url, "HEAD", headers={"Accept": MANIFEST_MEDIA_TYPE}
        )
        if existing.headers.get("Docker-Content-Digest") == reference.digest:
            return self._relative(reference)
        try:
            uploaded = self._client.upload_blob(
                str(path),
                container,
                layer,
                do_chunked=size > self.chunk_size,
                chunk_size=self.chunk_size,
            )
            if uploaded.status_code == 400 and "DIGEST_INVALID" in uploaded.text:
                raise ArtifactIntegrityError(str(path), digest, sha256_of(path))
            self._expect(uploaded, (200, 201), f"upload of {path} to {repository}")
            with oras.provider.temporary_empty_config() as config_path:
                config = self._client.upload_blob(config_path, container, dict(_EMPTY_CONFIG))
            self._expect(config, (200, 201), f"upload of the empty config to {repository}")
        except ValueError as error:  # oras-py's word for a refused chunk or upload session
            raise ArtifactStoreError(self._where, f"upload to {repository}: {error}") from None
        pushed = self._client.do_request(
            manifest_url, "PUT", data=body, headers={"Content-Type": MANIFEST_MEDIA_TYPE}
        )
        self._expect(pushed, (200, 201), f"push of the manifest to {repository}")
        return self._relative(reference)

    def _relative(self, reference: OciReference) -> str:
        segment = reference.repository.removeprefix(f"{self.repository_prefix}/")
        return f"{segment}@{reference.digest}"

    def where(self, uri: str) -> str:
        return str(self._own(uri))

    def fetch(self, uri: str, digest: str, dest: Path) -> Path:
        """Pull the artifact pinned by ``uri`` into ``dest``, which appears only once its bytes
        hash to ``digest`` (:class:`ArtifactIntegrityError` otherwise)."""
        reference = self._own(uri)
        container = self._client.container(reference.repository)
        response = self._client.do_request(
            self._client.manifest_url(container, reference.digest),
            "GET",
            headers={"Accept": MANIFEST_MEDIA_TYPE},
        )
        if response.status_code == 404:
            raise NotFoundError("artifact", uri, "deleted from the registry?")
        self._expect(response, (200,), f"manifest of {uri}")
        actual = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if actual != reference.digest:
            raise ArtifactIntegrityError(f"{uri} (manifest)", reference.digest, actual)
        layer_digest = self._model_layer(uri, response.content)
        if layer_digest != f"sha256:{digest}":
            raise ArtifactIntegrityError(uri, digest, layer_digest.removeprefix("sha256:"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            with self._client.get_blob(container, layer_digest, stream=True) as blob:
                if blob.status_code == 404:
                    raise NotFoundError("artifact", uri, f"its blob {layer_digest} is gone")
                self._expect(blob, (200,), f"blob of {uri}")
                with open(tmp, "wb") as out:
                    for chunk in blob.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
            verify(tmp, digest, uri)
            os.replace(tmp, dest)
        except requests.RequestException as error:
            raise ArtifactStoreError(self._where, f"download of {uri}: {error}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def delete(self, uri: str) -> None:
        """Delete the manifest (and so its tag); no error if it is gone. The blobs stay until
        the registry's garbage collection."""
        reference = self._own(uri)
        container = self._client.container(reference.repository)
        response = self._client.do_request(
            self._client.manifest_url(container, reference.digest), "DELETE"
        )
        if response.status_code == 405:
            raise ArtifactStoreError(
                self._where,
                f"the registry does not allow deletes, so {uri} stays (Docker Distribution: "
                "storage.delete.enabled: true, or REGISTRY_STORAGE_DELETE_ENABLED=true)",
            )
        if response.status_code != 404:
            self._expect(response, (200, 202), f"delete of {uri}")

    def _own(self, uri: str) -> OciReference:
        """The manifest of ``uri``: relative to this store (``<name>@sha256:…``) or, as older
        versions recorded it, absolute (``oci://<registry>/<prefix>/<name>@sha256:…``)."""
        if not uri.startswith("oci://"):
            uri = f"oci://{self.registry}/{self.repository_prefix}/{uri}"
        reference = OciReference.parse(uri)
        if reference.registry != self.registry or not reference.repository.startswith(
            f"{self.repository_prefix}/"
        ):
            # Credentials are only for this registry, and only this prefix is ours to delete in.
            raise OciUriError(
                uri,
                f"not one of this store's (registry {self.registry}, repositories under "
                f"{self.repository_prefix}/)",
            )
        return reference

    def _model_layer(self, uri: str, manifest_bytes: bytes) -> str:
        """The digest of the manifest's one model layer."""
        try:
            manifest = json.loads(manifest_bytes)
            layers = [
                layer["digest"]
                for layer in manifest["layers"]
                if layer.get("mediaType") == MODEL_LAYER_MEDIA_TYPE
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            layers = []
        if len(layers) != 1 or not isinstance(layers[0], str):
            raise ArtifactStoreError(
                self._where, f"{uri} is not a perfml model (one {MODEL_LAYER_MEDIA_TYPE} layer)"
            )
        digest: str = layers[0]
        return digest

    def _expect(self, response: Any, statuses: tuple[int, ...], what: str) -> None:
        if response.status_code not in statuses:
            raise ArtifactStoreError(
                self._where, f"{what}: HTTP {response.status_code} {_oci_errors(response)}"
            )


def _oci_errors(response: Any) -> str:
    """The registry's errors (``{"errors": [{"code", "message"}]}``) on one line."""
    try:
        errors = response.json()["errors"]
        text = "; ".join(f"{error['code']}: {error.get('message', '')}" for error in errors)
    except (ValueError, KeyError, TypeError):
        text = response.reason or ""
    return " ".join(text.split())[:300]


class _TimeoutSession(requests.Session):
    """A session whose every request, oras-py's token requests too, times out."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        # As oras-py's own session: some registries (Harbor) take a cookie for a browser.
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def request(self, method: str, url: str, **options: Any) -> Any:  # type: ignore[override]
        options.setdefault("timeout", self.timeout)
        return super().request(method, url, **options)


class _RegistryClient(oras.provider.Registry):  # type: ignore[misc]  # oras-py is untyped
    """oras-py's registry client (blob uploads, chunked or whole, and downloads, token
    requests) with its request path replaced, as :meth:`do_request` is what all of them call:

    * One attempt. oras-py's ``retry`` re-sends after any error, a closed port or a token
      service's refusal alike, sleeping 3, 5, 11, 29 and 83 s: over two minutes to fail.
    * The registry's challenge decides the answer: Basic (htpasswd) with the credentials, sent
      up front from then on; Bearer (Harbor) through oras-py's token flow, asking for a fresh
      token whenever the one held is refused (oras-py re-sends a token scoped to another
      repository).
    * A final 401 or 403 raises :class:`ArtifactAuthError`, a transport failure
      :class:`ArtifactStoreError`, both naming the registry and the repository.
    * Credentials come from the store's arguments only, never ``~/.docker/config.json``.
    """

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool,
        tls_verify: bool | str,
        timeout: float,
        username: str | None,
        password: str | None,
    ) -> None:
        super().__init__(
            hostname=registry, insecure=insecure, tls_verify=tls_verify, auth_backend="token"
        )
        self.session = self.auth.session = _TimeoutSession(timeout)
        self.username = username
        self._basic_header: dict[str, str] = {}
        self._send_basic = False
        if username is not None and password is not None:
            self.auth.set_basic_auth(username, password)
            encoded = oras.auth.utils.get_basic_auth(username, password)
            self._basic_header = {"Authorization": f"Basic {encoded}"}

    def container(self, repository: str) -> Any:
        """oras-py's address of ``repository`` on this registry. Built field by field: its
        parser would take a first path segment containing a '.' for a registry host."""
        namespace, _, name = repository.rpartition("/")
        container = oras.container.Container(name, registry=self.hostname)
        container.namespace = namespace or None
        return container

    def manifest_url(self, container: Any, reference: str) -> str:
        url: str = container.manifest_url(reference)
        return f"{self.prefix}://{url}"

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> Any:
        # A copy: oras-py passes its client's own header dict and would keep what we add.
        headers = dict(headers or {})
        if self._send_basic:
            headers.update(self._basic_header)
        elif self.auth.token:
            headers["Authorization"] = f"Bearer {self.auth.token}"
        response = self._send(method, url, data, headers, json, stream)
        if response.status_code == 401:
            answer = self._answer(response, headers)
            if answer is not None:
                response.close()
                response = self._send(method, url, data, answer, json, stream)
        if response.status_code in (401, 403):
            raise self._refused(response)
        return response

    def _answer(self, challenged: Any, headers: dict[str, str]) -> dict[str, str] | None:
        """The headers that answer the 401's challenge, or None if there is nothing to try."""
        challenge = challenged.headers.get("Www-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self._basic_header or self._send_basic:
                return None
            self._send_basic = True
            return {**headers, **self._basic_header}
        if scheme == "bearer":
            answer, changed = self.auth.authenticate_request(challenged, headers, refresh=True)
            return dict(answer) if changed else None
        return None

    def _send(
        self, method: str, url: str, data: Any, headers: dict[str, str], json: Any, stream: bool
    ) -> Any:
        try:
            return self.session.request(
                method,
                url,
                data=data,
                json=json,
                headers=headers,
                stream=stream,
                verify=self._tls_verify,
            )
        except requests.exceptions.SSLError as error:
            raise ArtifactStoreError(
                f"oci://{self.hostname}",
                f"TLS with the registry failed ({error}); give its CA certificate as ca_bundle",
            ) from None
        except requests.RequestException as error:
            raise ArtifactStoreError(
                f"oci://{self.hostname}", f"cannot reach the registry: {error}"
            ) from None

    def _refused(self, response: Any) -> ArtifactAuthError:
        match = _API_REPOSITORY.search(response.request.url or "")
        repository = match.group("repository") if match else "(registry API)"
        who = (
            f"user {self.username!r}"
            if self.username is not None
            else "anonymous access (no username/password given)"
        )
        verb = "refused" if response.status_code == 401 else "denied access to"
        return ArtifactAuthError(
            f"oci://{self.hostname}",
            f"repository {repository}: the registry {verb} {who} "
            f"(HTTP {response.status_code} {_oci_errors(response)})",
        )
