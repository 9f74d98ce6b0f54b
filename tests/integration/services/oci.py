"""An OCI registry (docker-registry) for tests, with htpasswd, TLS or token auth."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import bcrypt
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.integration.services.common import (
    Service,
    ServiceProcess,
    ServiceStartError,
    free_port,
    require_binary,
    wait_until,
)


class OciRegistry(Service):
    """A Docker Distribution registry (Debian's ``docker-registry``) of its own for a test, on a
    free loopback port, storing in ``workdir/storage``, with deletes enabled unless
    ``delete_enabled=False``.

    With ``basic_auth=(user, password)`` it takes only those credentials (an htpasswd file with
    the bcrypt hash). The registry checks them over plain HTTP too: its docs ask for TLS, but
    only Docker's client insists. With ``token_auth=(user, password)`` it wants bearer tokens,
    as Harbor does, from a :class:`TokenServer` of its own (``token_server``) that gives them
    for those credentials. With ``tls=True`` it serves HTTPS with a certificate for
    127.0.0.1 signed by a CA made for it, whose certificate is ``ca_path``. ``address`` is the
    ``host:port`` an artifact store takes; :meth:`get` asks the registry API directly, with the
    credentials and the CA.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        basic_auth: tuple[str, str] | None = None,
        token_auth: tuple[str, str] | None = None,
        tls: bool = False,
        delete_enabled: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        if basic_auth is not None and token_auth is not None:
            raise ValueError("basic_auth or token_auth, not both")
        self.workdir = workdir
        self.auth = basic_auth or token_auth
        self.token_server = TokenServer(workdir / "tokens", token_auth) if token_auth else None
        self.tls = tls
        self.delete_enabled = delete_enabled
        self.start_timeout = start_timeout
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.address}"
        self.storage_dir = workdir / "storage"
        self.config_path = workdir / "registry.yml"
        self.ca_path: Path | None = workdir / "ca.pem" if tls else None
        self.service: ServiceProcess | None = None

    def start(self) -> None:
        """Write the config, start the registry and wait until ``/v2/`` answers 200."""
        binary = require_binary("docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        http: dict[str, Any] = {"addr": self.address, "secret": secrets.token_hex(16)}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": self.delete_enabled},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if self.token_server is not None:
            self.token_server.__enter__()
            config["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": self.token_server.service,
                    "issuer": self.token_server.issuer,
                    "rootcertbundle": str(self.token_server.certificate_path),
                }
            }
        elif self.auth is not None:
            user, password = self.auth
            # Cost 4, bcrypt's minimum: the hash guards a test server, and every request pays it.
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(f"{user}:{hashed}\n")
            config["auth"] = {"htpasswd": {"realm": "perfml-test", "path": str(htpasswd)}}
        if self.ca_path is not None:
            certificate, key = write_test_certificates(self.workdir, self.ca_path)
            http["tls"] = {"certificate": str(certificate), "key": str(key)}
        # JSON is YAML, so the config needs no YAML writer.
        self.config_path.write_text(json.dumps(config, indent=2))
        argv = [binary, "serve", str(self.config_path)]
        self.service = ServiceProcess("docker-registry", argv, self.workdir / "registry.log")
        self.service.start()
        try:
            wait_until(self._answers, self.start_timeout, f"the OCI registry at {self.url}")
        except (TimeoutError, RuntimeError) as error:
            log = self.log()
            self.stop()
            raise ServiceStartError("docker-registry", str(error), log) from None

    def stop(self) -> None:
        """Stop the registry (terminate, wait, kill) and its token server."""
        if self.service is not None:
            self.service.stop()
        if self.token_server is not None:
            self.token_server.__exit__(None, None, None)

    def log(self) -> str:
        """What the registry has logged so far."""
        return self.service.log() if self.service is not None else "(not started)"

    def get(self, path: str, **options: Any) -> httpx.Response:
        """``GET`` the registry API ``path`` (``/v2/_catalog``) with the credentials (or a
        token for them) and the CA."""
        verify = ssl.create_default_context(cafile=self.ca_path) if self.ca_path else True
        with httpx.Client(auth=self.auth, verify=verify, timeout=5.0) as client:
            response = client.get(f"{self.url}{path}", **options)
            challenge = response.headers.get("Www-Authenticate", "")
            if response.status_code != 401 or not challenge.startswith("Bearer "):
                return response
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            token = client.get(params.pop("realm"), params=params).json()["token"]
            headers = {**options.pop("headers", {}), "Authorization": f"Bearer {token}"}
            return httpx.get(
                f"{self.url}{path}", headers=headers, verify=verify, timeout=5.0, **options
            )

    def catalog(self) -> list[str]:
        """The repositories that hold something."""
        response = self.get("/v2/_catalog")
        response.raise_for_status()
        repositories: list[str] = response.json()["repositories"]
        return repositories

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps the blob ``sha256:<hex>`` (to tamper with it)."""
        hex_digest = digest.removeprefix("sha256:")
        return (
            self.storage_dir / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest
        ) / "data"

    def _answers(self) -> bool:
        if self.service is None or self.service.process is None:
            raise RuntimeError("the registry is not running")
        if self.service.process.poll() is not None:
            raise RuntimeError(f"the process exited with code {self.service.process.returncode}")
        try:
            status = self.get("/v2/").status_code
        except httpx.TransportError:
            return False
        return status == 200 or (status == 401 and self.token_server is not None)


def write_test_certificates(directory: Path, ca_path: Path) -> tuple[Path, Path]:
    """Make a CA (its certificate in ``ca_path``) and a server certificate for 127.0.0.1 and
    localhost signed by it, valid for a day; returns the server's certificate and key files."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str, issuer: str, public_key: Any, signer: Any, extensions: Sequence[Any]
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build(
        "perfml test CA",
        "perfml test CA",
        ca_key.public_key(),
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_key_usage(key_cert_sign=True, crl_sign=True), True),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = build(
        "127.0.0.1",
        "perfml test CA",
        server_key.public_key(),
        ca_key,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(digital_signature=True), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                False,
            ),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    certificate_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certificate_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path


def _key_usage(**granted: bool) -> x509.KeyUsage:
    usages = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{usage: granted.get(usage, False) for usage in usages})


class TokenServer:
    """An in-process token service on a free loopback port, for a registry's bearer-token auth
    (what Harbor's core is to its registry): ``GET /token?service=...&scope=...`` with the Basic
    credentials ``credentials`` answers a JWT granting every scope asked for, signed with a key
    whose certificate is ``certificate_path`` (the registry's ``rootcertbundle``). Other
    credentials get 401. ``scopes`` lists the scopes of every token issued."""

    issuer = "perfml-test-token-issuer"
    service = "perfml-test-registry"

    def __init__(self, workdir: Path, credentials: tuple[str, str]) -> None:
        self.workdir = workdir
        self.credentials = credentials
        self.certificate_path = workdir / "token-signer.pem"
        self.scopes: list[str] = []
        self.realm = ""
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._certificate_der = b""
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "perfml test token signer")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self._certificate_der = certificate.public_bytes(serialization.Encoding.DER)
        tokens = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = tokens._answer(self.path, self.headers.get("Authorization", ""))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._server.server_port}/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def _answer(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        user, password = self.credentials
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if not secrets.compare_digest(authorization, expected):
            return 401, {"details": "bad credentials"}
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
            self.scopes.append(scope)
        token = self._token({"sub": user, "access": access})
        return 200, {"token": token, "access_token": token, "expires_in": 300}

    def _token(self, claims: dict[str, Any]) -> str:
        """A JWT (ES256) the registry trusts: the signer's certificate rides in ``x5c``."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.service,
            "iat": now,
            "nbf": now - 60,
            "exp": now + 300,
            "jti": secrets.token_hex(8),
            **claims,
        }
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self._certificate_der).decode()],
        }
        signing_input = f"{_base64url(json.dumps(header))}.{_base64url(json.dumps(claims))}"
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_base64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _base64url(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


StartOciRegistry = Callable[..., OciRegistry]
"""The type of the ``start_oci_registry`` fixture: ``OciRegistry``'s arguments but ``workdir``."""
