"""The REST adapter of the Open Inference Protocol v2: it only translates HTTP to the data plane.

Every :class:`~perfml.serving.errors.ServingError` answers its ``status_code`` with the
protocol's body ``{"error": "..."}``, as do malformed JSON (400), a request that does not fit
the schema (422), a body over the limit (413) and unknown routes (404). Health endpoints and
``/metrics`` stay open; the rest asks for the bearer token when one is configured.

``infer`` also speaks Triton's binary tensor data extension, which ``tritonclient`` uses by
default: a request with an ``Inference-Header-Content-Length`` header is a JSON inference header
followed by the inputs' raw bytes (:func:`~perfml.serving.types.read_binary_request`), and
outputs asked for with ``binary_data`` (or the request's ``binary_data_output``) are answered
the same way, as ``application/octet-stream``.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perfml import __version__
from perfml.serving.dataplane import DataPlane
from perfml.serving.errors import (
    ForbiddenError,
    PayloadTooLargeError,
    ServingError,
    UnauthorizedError,
)
from perfml.serving.types import (
    INFERENCE_HEADER,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    ReadyResponse,
    read_binary_request,
    wants_binary,
    write_binary_response,
)

DEFAULT_MAX_BODY = 10 * 1024 * 1024
INLINE_VALUES = 256
"""Requests with at most this many input values are scored on the event loop, not a thread."""
STARTED = "perfml.started"
"""The scope key holding when the request arrived (``time.perf_counter()``)."""
_KINDS = {"infer": ("infer", "predictions"), "feedback": ("feedback", "feedback")}
"""The last path segment of an observed endpoint: its ``(method, service)`` labels."""
_Answer = TypeVar("_Answer", bound=BaseModel)


class ServingMetrics(Protocol):
    """What the server reports to; :class:`perfml.serving.telemetry.ServingMetrics` is one."""

    def observe_request(
        self,
        model: str,
        version: str | int,
        method: str,
        code: int,
        seconds: float,
        service: str = ...,
    ) -> None: ...
    def model_loaded(self, model: str, version: str | int, seconds: float) -> None: ...
    def model_load_failed(self, model: str, version: str | int) -> None: ...
    def render(self) -> tuple[bytes, str]: ...


class NoMetrics:
    """The default: records nothing, renders an empty exposition."""

    def observe_request(
        self,
        model: str,
        version: str | int,
        method: str,
        code: int,
        seconds: float,
        service: str = "predictions",
    ) -> None:
        return None

    def model_loaded(self, model: str, version: str | int, seconds: float) -> None:
        return None

    def model_load_failed(self, model: str, version: str | int) -> None:
        return None

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4; charset=utf-8"


def _json(model: BaseModel, status: int = 200) -> Response:
    # pydantic's own serializer: the body of ``JSONResponse(dump(model))`` at a third of the cost
    body = model.model_dump_json(exclude_unset=True, exclude_none=True)
    return Response(body, status_code=status, media_type="application/json")


def _inference(request: InferenceRequest, answer: InferenceResponse) -> Response:
    """``answer`` as JSON, or in the binary tensor data extension if an output is wanted so."""
    binary = [o.name for o in answer.outputs if wants_binary(request, o.name)]
    if not binary:
        return _json(answer)
    body, header_length = write_binary_response(answer, binary)
    return Response(
        body,
        media_type="application/octet-stream",
        headers={INFERENCE_HEADER: str(header_length)},
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 422, 503)
}


def build_app(
    plane: DataPlane,
    *,
    metrics: ServingMetrics | None = None,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    manage_models: bool = True,
) -> FastAPI:
    """The ASGI app serving ``plane``; ``token`` turns bearer authentication on.

    With ``manage_models`` the app's lifespan starts and stops the model repository.
    """
    meter: ServingMetrics = metrics or NoMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_models:
            plane.models.start()
        try:
            yield
        finally:
            if manage_models:
                plane.models.stop()

    app = FastAPI(
        title="perfml inference (Open Inference Protocol v2)",
        version=__version__,
        lifespan=lifespan,
    )

    async def authorize(request: Request) -> None:  # async: no threadpool hop per request
        refused = _refusal(request.headers.get("authorization", ""), token)
        if refused is not None:
            raise refused

    guarded = [Depends(authorize)]

    def observed(
        name: str,
        method: str,
        service: str,
        call: Callable[[], tuple[_Answer, str]],
        render: Callable[[_Answer], Response] = _json,
    ) -> Response:
        """Answer ``render(answer)`` where ``call()`` gives the answer and the version that
        gave it, timed per model.

        Failures are observed by the error handlers, which also see those raised before the
        endpoint runs (validation, authentication).
        """
        started = time.perf_counter()
        answer, version = call()
        meter.observe_request(name, version, method, 200, time.perf_counter() - started, service)
        return render(answer)

    def observe_failure(request: Request, code: int) -> None:
        name = request.path_params.get("name")
        path = request.url.path
        kind = _KINDS.get(path.rsplit("/", 1)[-1])
        if not isinstance(name, str) or kind is None or not plane.models.knows(name):
            return  # an unknown name is not a model: it gets no series of its own
        seconds = time.perf_counter() - request.scope.get(STARTED, time.perf_counter())
        version = plane.models.current_version(name)
        meter.observe_request(name, version, kind[0], code, seconds, kind[1])

    # -- health, server metadata, metrics -----------------------------------------------------

    @app.get("/v2/health/live", response_model=LiveResponse)
    def live() -> Response:
        return _json(LiveResponse(live=plane.live()))

    @app.get("/v2/health/ready", response_model=ReadyResponse, responses={503: {}})
    def ready() -> Response:
        is_ready = plane.ready()
        return _json(ReadyResponse(ready=is_ready), 200 if is_ready else 503)

    @app.get("/metrics", response_class=Response)
    def metrics_endpoint() -> Response:
        body, content_type = meter.render()
        return Response(body, media_type=content_type)

    @app.get("/v2", response_model=MetadataServerResponse, dependencies=guarded, responses=_ERRORS)
    def server_metadata() -> Response:
        return _json(plane.metadata())

    # -- models ------------------------------------------------------------------------------

    def model_metadata(name: str, version: str | None = None) -> Response:
        return _json(plane.model_metadata(name, version))

    def model_ready(name: str, version: str | None = None) -> Response:
        plane.model_ready(name, version)
        return _json(ReadyResponse(name=name, ready=True))

    async def infer(name: str, payload: InferenceRequest, version: str | None = None) -> Response:
        def run() -> tuple[InferenceResponse, str]:
            answer = plane.infer(name, payload, version)
            return answer, answer.model_version or ""

        def render(answer: InferenceResponse) -> Response:
            return _inference(payload, answer)

        if _values(payload) <= INLINE_VALUES:
            # Small requests score on the event loop: the thread hop would cost more.
            return observed(name, "infer", "predictions", run, render)
        return await run_in_threadpool(observed, name, "infer", "predictions", run, render)

    async def infer_binary(request: Request) -> Response:
        """``infer`` for a request in the binary tensor data extension: the token first."""
        await authorize(request)
        body = await request.body()
        try:
            payload = read_binary_request(body, request.headers[INFERENCE_HEADER])
        except ValidationError as exc:  # the inference header does not fit the schema: 422
            raise RequestValidationError(exc.errors()) from None
        params = request.path_params
        return await infer(params["name"], payload, params.get("version"))

    class InferRoute(APIRoute):
        """The ``infer`` route: FastAPI reads a JSON request, ``infer_binary`` a binary one."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            read_json = super().get_route_handler()

            async def handle(request: Request) -> Response:
                if INFERENCE_HEADER in request.headers:
                    return await infer_binary(request)
                return await read_json(request)

            return handle

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.get(
            prefix,
            response_model=MetadataModelResponse,
            dependencies=guarded,
            responses=_ERRORS,
        )(model_metadata)
        app.get(
            prefix + "/ready",
            response_model=ReadyResponse,
            dependencies=guarded,
            responses=_ERRORS,
        )(model_ready)
        app.router.add_api_route(
            prefix + "/infer",
            infer,
            methods=["POST"],
            response_model=InferenceResponse,
            dependencies=guarded,
            responses=_ERRORS,
            route_class_override=InferRoute,
        )

    @app.post(
        "/v2/models/{name}/feedback",
        response_model=FeedbackResponse,
        dependencies=guarded,
        responses=_ERRORS,
    )
    def feedback(name: str, payload: FeedbackRequest) -> Response:
        def run() -> tuple[BaseModel, str]:
            answer = plane.feedback(name, payload)
            return answer, answer.model_version

        return observed(name, "feedback", "feedback", run)

    # -- errors: one protocol body for all -------------------------------------------------

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> Response:
        observe_failure(request, exc.status_code)
        answer = _error(exc.status_code, str(exc))
        answer.headers.update(exc.headers)
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            observe_failure(request, 400)
            return _error(400, "malformed JSON: " + "; ".join(_problem(e) for e in errors))
        observe_failure(request, 422)
        return _error(422, "; ".join(_problem(e) for e in errors[:10]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    def authorized(scope: Scope) -> bool:
        if not token:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        return _refusal(header, token) is None

    app.add_middleware(FastInfer, plane=plane, meter=meter, authorized=authorized)
    if max_body_bytes:
        app.add_middleware(BodyLimit, limit=max_body_bytes)  # outside: the limit comes first
    return app


def _refusal(header: str, token: str | None) -> ServingError | None:
    """Why an ``Authorization`` header is refused (None: it is not)."""
    if not token:
        return None
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return UnauthorizedError()
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return ForbiddenError()
    return None


def _values(payload: InferenceRequest) -> int:
    return sum(
        len(tensor.data if tensor.binary is None else tensor.binary) for tensor in payload.inputs
    )


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    message = str(error.get("msg", "invalid"))
    return f"{where}: {message}" if where else message


_BINARY_HEADER = INFERENCE_HEADER.lower().encode("latin-1")
"""The header as ASGI gives it, lower case."""
_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class FastInfer:
    """ASGI middleware: the fast path of a successful ``infer``, skipping FastAPI's machinery.

    FastAPI's dependency and parameter solving costs more than scoring a small request. An
    authorized JSON request to ``/v2/models/{name}[/versions/{v}]/infer`` that parses and
    validates as the endpoint would (``json.loads``, then :class:`InferenceRequest`), has at
    most :data:`INLINE_VALUES` values and scores without error is answered here, with the same
    body and metric as the endpoint. Everything else — errors and binary tensor data included —
    goes to the app unchanged, which answers it as it always does (inference is pure, so
    rerunning is safe).
    """

    def __init__(
        self,
        app: ASGIApp,
        plane: DataPlane,
        meter: ServingMetrics,
        authorized: Callable[[Scope], bool],
    ) -> None:
        self.app = app
        self.plane = plane
        self.meter = meter
        self.authorized = authorized

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (
            _INFER_PATH.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if (
            found is None
            or not self.authorized(scope)
            or not _json_content(scope)
            or _BINARY_HEADER in dict(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        message = await receive()
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.app(scope, _replayed(message, receive), send)
            return
        name, version = found.group(1), found.group(2)
        response = self._answer(name, version, message.get("body", b""))
        if response is None:
            await self.app(scope, _replayed(message, receive), send)
            return
        await response(scope, receive, send)

    def _answer(self, name: str, version: str | None, body: bytes) -> Response | None:
        """The endpoint's answer to a request that succeeds, else None (the app answers)."""
        try:
            payload = InferenceRequest.model_validate(json.loads(body))
            if _values(payload) > INLINE_VALUES:
                return None  # large: the endpoint scores it in a thread
            started = time.perf_counter()
            answer = self.plane.infer(name, payload, version)
        except Exception:
            return None
        seconds = time.perf_counter() - started
        self.meter.observe_request(
            name, answer.model_version or "", "infer", 200, seconds, "predictions"
        )
        return _inference(payload, answer)


def _json_content(scope: Scope) -> bool:
    """Whether FastAPI would read the body as JSON (no content type, or a JSON one)."""
    kind: str = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    if not kind:
        return True
    main, _, subtype = kind.split(";", 1)[0].strip().lower().partition("/")
    return main == "application" and (subtype == "json" or subtype.endswith("+json"))


def _replayed(first: Message, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return replay


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is answered 413 before the app reads it.

    The body is read here (the app would read it whole anyway) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[STARTED] = time.perf_counter()
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, str(PayloadTooLargeError(self.limit)))
        await response(scope, receive, send)


__all__ = ["BodyLimit", "NoMetrics", "ServingMetrics", "build_app"]
