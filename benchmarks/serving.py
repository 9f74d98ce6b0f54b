"""Inference serving: perfml's server against MLServer and a fixed-body floor, under ``wrk``.

Claims measured (throughput in requests/s, p50 and p99 latency in ms), each server on one
core and the load generator (``wrk``, one thread, a Lua script POSTing the same Open
Inference Protocol v2 JSON body) pinned to the other with ``taskset``:

- two models served by both sides: (a) perfml's default detector (``streaming``) fitted on a
  generated week of 5-minute points and saved; (b) a trivial model answering the row-wise
  sum of its value inputs, which shows each server's own overhead per request;
- perfml: ``perfml.serving.build_app`` over a registry holding both models (the trivial one
  is the ``bench_sum`` detector registered by this script), on uvicorn with uvloop and
  httptools when installed;
- MLServer (the version pinned in ``constraints.txt``, in its own virtual environment
  ``~/.cache/perfml-bench-mlserver`` with ``uvloop<0.22`` and perfml installed editable,
  created once and reused): default settings (``parallel_workers: 1``), the default detector
  through ``perfml.serving.mlserver.PerfmlRuntime`` when it exists there, else through a
  minimal runtime here that loads the same artifact with ``perfml.detectors.load``; the
  trivial model as a custom runtime; adaptive batching off (``max_batch_size: 1``) and on
  (``max_batch_size: 32``, ``max_batch_time: 0.002`` s);
- the floor: a bare Starlette endpoint on the same uvicorn returning a fixed body.

Concurrency 1, 8 and 32 with 1 and 100 rows per request (``--quick``: concurrency 8, one row).
Ratios compare perfml to the better of MLServer's two settings. Note that MLServer's adaptive
batching concatenates concurrent requests into one ``score`` call, and a detector's scores are
causal (each row is scored after the rows before it in the frame): with batching on, MLServer's
answers for the default detector depend on the other requests in the batch, so they are not the
answers perfml gives; ``rps_vs_mlserver_nobatch_default_c8`` compares like with like.

    python benchmarks/serving.py [--quick] [--json FILE] [--dir DIR] [--seconds S]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
MLSERVER_VENV = CACHE / "perfml-bench-mlserver"
T0 = 1_700_000_000_000
STEP_MS = 300_000
BATCH_ON = {"max_batch_size": 32, "max_batch_time": 0.002}
BATCH_OFF = {"max_batch_size": 1, "max_batch_time": 0.0}
MLSERVER_MODELS = ("default", "trivial", "default-batch", "trivial-batch")

BENCH_MODELS = '''
"""The trivial model of the serving benchmark: each row's sum of its value columns."""

from typing import Any

import numpy as np

from perfml.detectors import Detector, register


@register
class SumOfInputs(Detector):
    name = "bench_sum"

    def reset(self) -> None:
        pass

    def update(self, ts: int, value: Any) -> float:
        return float(np.sum(value))

    def get_state(self) -> Any:
        return {}, {}

    def set_state(self, meta: Any, arrays: Any) -> None:
        pass

    def score_values(self, ts: Any, values: Any) -> Any:  # stateless: no copy needed
        return values if values.ndim == 1 else values.sum(axis=1)
'''

PERFML_SERVER = """
import sys

import uvicorn

import bench_models  # noqa: F401  (registers bench_sum)
from perfml.metadata import MetadataDatabase
from perfml.registry import FilesystemArtifactStore, ModelRegistry
from perfml.serving import DataPlane, ModelRepository, build_app

url, artifacts, port, loop, http = sys.argv[1:6]
database = MetadataDatabase(url)
registry = ModelRegistry(database, FilesystemArtifactStore(artifacts), actor="bench")
repository = ModelRepository(registry, ["default", "trivial"], poll_interval=None)
app = build_app(DataPlane(repository))
uvicorn.run(app, host="127.0.0.1", port=int(port), loop=loop, http=http,
            log_level="warning", access_log=False)
"""

FLOOR_SERVER = """
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = (
    b'{"model_name":"floor","outputs":'
    b'[{"name":"anomaly_score","shape":[1],"datatype":"FP64","data":[0.0]}]}'
)


async def fixed(request):
    await request.body()
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/{path:path}", fixed, methods=["GET", "POST"])])
port, loop, http = sys.argv[1:4]
uvicorn.run(app, host="127.0.0.1", port=int(port), loop=loop, http=http,
            log_level="warning", access_log=False)
"""

MLSERVER_RUNTIMES = """
import numpy as np
import pyarrow as pa
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from perfml.detectors import load


def _data(tensor):
    data = tensor.data
    return getattr(data, "root", data)


def _answer(model, request, scores):
    return InferenceResponse(
        model_name=model.name,
        model_version=model.version,
        id=request.id,
        outputs=[
            ResponseOutput(
                name="anomaly_score", shape=[len(scores)], datatype="FP64", data=scores.tolist()
            )
        ],
    )


class DetectorRuntime(MLModel):
    async def load(self) -> bool:
        self._detector = load(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        by_name = {tensor.name: _data(tensor) for tensor in payload.inputs}
        frame = pa.table(
            {
                "ts": pa.array(by_name["ts"], pa.int64()),
                "value": pa.array(by_name["value"], pa.float64()),
            }
        )
        return _answer(self, payload, np.asarray(self._detector.score(frame)))


class SumRuntime(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        columns = [
            np.asarray(_data(t), dtype=np.float64).reshape(-1)
            for t in payload.inputs
            if t.name != "ts"
        ]
        return _answer(self, payload, np.sum(columns, axis=0))
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()
"""


@dataclass(frozen=True)
class Result:
    side: str
    model: str
    rows: int
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def mlserver_version() -> str:
    found = re.search(r"^mlserver==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit("constraints.txt pins no mlserver version")
    return found.group(1)


def mlserver_python() -> tuple[Path, bool]:
    """The Python of the MLServer environment, and whether it had to be created now."""
    python = MLSERVER_VENV / "bin" / "python"
    version = mlserver_version()
    check = [
        str(python),
        "-c",
        f"import mlserver, perfml.detectors; assert mlserver.__version__ == {version!r}",
    ]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, False
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLSERVER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"mlserver=={version}", "uvloop<0.22"], check=True)
    subprocess.run([*pip, "-e", str(ROOT), "uvloop<0.22"], check=True)
    return python, True


def has_perfml_runtime(python: Path) -> bool:
    probe = "from perfml.serving.mlserver import PerfmlRuntime"
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(core: int | None, command: list[str]) -> list[str]:
    return command if core is None else ["taskset", "-c", str(core), *command]


def body(rows: int) -> dict[str, Any]:
    stamps = [T0 + 7 * 86_400_000 + i * STEP_MS for i in range(rows)]
    values = [50.0 + (i % 7) for i in range(rows)]
    return {
        "inputs": [
            {"name": "ts", "shape": [rows], "datatype": "INT64", "data": stamps},
            {"name": "value", "shape": [rows], "datatype": "FP64", "data": values},
        ]
    }


def prepare_models(scratch: Path) -> tuple[str, Path, Path, dict[str, Any]]:
    """A registry with ``default`` (streaming) and ``trivial`` (bench_sum); the saved detector."""
    import numpy as np
    import pyarrow as pa

    from perfml.detectors import DEFAULT_DETECTOR, create
    from perfml.metadata import MetadataDatabase
    from perfml.registry import FilesystemArtifactStore, ModelRegistry
    from perfml.registry.detector_versions import register_detector
    from perfml.registry.names import Ref

    importlib.import_module("bench_models")  # registers bench_sum
    rng = np.random.default_rng(7)
    n = 7 * 288  # a week of 5-minute points
    ts = T0 + np.arange(n, dtype=np.int64) * STEP_MS
    values = 50 + 10 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 2, n)
    history = pa.table({"ts": ts, "value": values})
    detector = create(DEFAULT_DETECTOR).fit(history)
    saved = scratch / "default.zip"
    url = f"sqlite:///{scratch}/registry.db"
    artifacts = scratch / "artifacts"
    with MetadataDatabase(url) as database:
        registry = ModelRegistry(database, FilesystemArtifactStore(artifacts), actor="bench")
        version = register_detector(registry, "default", detector, features=["cpu_util"])
        trivial = create("bench_sum").fit(history)
        register_detector(registry, "trivial", trivial, features=["cpu_util"])
        shutil.copyfile(registry.fetch(Ref("default", version=version.version)), saved)
    extra = {"sha256": version.digest, "record": version.to_json()}
    return url, artifacts, saved, extra


class Server:
    """A server subprocess, ready once every probe answers 200."""

    def __init__(
        self, command: list[str], probes: list[str], cwd: Path, env: dict[str, str]
    ) -> None:
        self.log = (cwd / f"server-{time.monotonic_ns()}.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if all(_ok(probe) for probe in probes):
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        tail = Path(self.log.name).read_text()[-3000:]
        raise SystemExit(f"{' '.join(command[:4])} did not become ready:\n{tail}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as answer:
        return bool(answer.status == 200)


def check_answer(url: str, payload: bytes, rows: int) -> None:
    request = urllib.request.Request(
        url, data=payload, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            outputs = json.loads(answer.read())["outputs"]
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url} answered {exc.code}: {exc.read()[:500]!r}") from None
    if len(outputs[0]["data"]) != rows:
        raise SystemExit(f"{url} answered {outputs[0]} for {rows} rows")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(
    url: str, lua: Path, concurrency: int, seconds: float, core: int | None
) -> tuple[float, float, float, int]:
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        url,
    ]
    out = subprocess.run(pinned(core, command), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    quantiles = {
        q: float(v) * _UNITS[unit]
        for q, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    failed = re.search(r"Socket errors:.*?timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (int(failed.group(1)) if failed else 0)
    return rps, quantiles["50"], quantiles["99"], errors


def measure(
    side: str,
    urls: dict[str, str],
    lua: dict[int, Path],
    payloads: dict[int, bytes],
    concurrencies: list[int],
    seconds: float,
    core: int | None,
) -> list[Result]:
    results = []
    for model, url in urls.items():
        for rows, script in lua.items():
            if model != "floor":
                check_answer(url, payloads[rows], rows)
            for concurrency in concurrencies:
                run_wrk(url, script, concurrency, 1, core)  # warm-up
                rps, p50, p99, errors = run_wrk(url, script, concurrency, seconds, core)
                results.append(Result(side, model, rows, concurrency, rps, p50, p99, errors))
    return results


def mlserver_folder(scratch: Path, saved: Path, extra: dict[str, Any], perfml: bool) -> Path:
    """One MLServer repository: ``default`` and ``trivial`` unbatched, ``*-batch`` batched."""
    folder = scratch / "mlserver"
    folder.mkdir()
    (folder / "bench_runtimes.py").write_text(MLSERVER_RUNTIMES)
    detector = (
        "perfml.serving.mlserver.PerfmlRuntime" if perfml else "bench_runtimes.DetectorRuntime"
    )
    parameters = {"uri": str(saved), **({"extra": extra} if perfml else {})}
    for suffix, batching in (("", BATCH_OFF), ("-batch", BATCH_ON)):
        for name, implementation, params in (
            ("default", detector, parameters),
            ("trivial", "bench_runtimes.SumRuntime", {}),
        ):
            settings = {
                "name": name + suffix,
                "implementation": implementation,
                "parameters": params,
                **batching,
            }
            (folder / (name + suffix)).mkdir()
            (folder / (name + suffix) / "model-settings.json").write_text(json.dumps(settings))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="concurrency 8, one row, short runs")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--seconds", type=float, help="seconds per measurement")
    args = parser.parse_args()
    concurrencies, row_counts = ([8], [1]) if args.quick else ([1, 8, 32], [1, 100])
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    two_cores = (os.cpu_count() or 1) >= 2
    server_core, load_core = (0, 1) if two_cores else (None, None)
    loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = "httptools" if _importable("httptools") else "h11"
    python, created = mlserver_python()
    perfml_runtime = has_perfml_runtime(python)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        scratch = Path(tmp)
        (scratch / "bench_models.py").write_text(BENCH_MODELS)
        sys.path.insert(0, str(scratch))
        url, artifacts, saved, extra = prepare_models(scratch)
        path = [str(scratch), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        payloads = {rows: json.dumps(body(rows)).encode() for rows in row_counts}
        lua: dict[int, Path] = {}
        for rows, payload in payloads.items():
            (scratch / f"body-{rows}.json").write_bytes(payload)
            lua[rows] = scratch / f"post-{rows}.lua"
            lua[rows].write_text(WRK_SCRIPT.format(body=scratch / f"body-{rows}.json"))
        (scratch / "perfml_server.py").write_text(PERFML_SERVER)
        (scratch / "floor_server.py").write_text(FLOOR_SERVER)
        results: list[Result] = []

        def serve(side: str, command: list[str], probe: str, urls: dict[str, str]) -> None:
            server = Server(pinned(server_core, command), [probe], scratch, env)
            try:
                results.extend(
                    measure(side, urls, lua, payloads, concurrencies, seconds, load_core)
                )
            finally:
                server.stop()

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        perfml_urls = {m: f"{base}/v2/models/{m}/infer" for m in ("trivial", "default")}
        serve(
            "perfml",
            [sys.executable, "perfml_server.py", url, str(artifacts), str(port), loop, http],
            f"{base}/v2/health/ready",
            perfml_urls,
        )
        serve(
            "floor",
            [sys.executable, "floor_server.py", str(port), loop, http],
            f"{base}/v2/health/ready",
            {"floor": f"{base}/v2/models/floor/infer"},
        )
        folder = mlserver_folder(scratch, saved, extra, perfml_runtime)
        ports = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
        (folder / "settings.json").write_text(json.dumps({**ports, "debug": False}))
        server = Server(
            pinned(server_core, [str(python.with_name("mlserver")), "start", str(folder)]),
            [f"{base}/v2/models/{m}/ready" for m in MLSERVER_MODELS],
            scratch,
            env,
        )
        try:
            for label, suffix in (("mlserver", ""), ("mlserver+batch", "-batch")):
                urls = {m: f"{base}/v2/models/{m}{suffix}/infer" for m in ("trivial", "default")}
                results.extend(
                    measure(label, urls, lua, payloads, concurrencies, seconds, load_core)
                )
        finally:
            server.stop()

    report(results, args, created, perfml_runtime, loop, http, seconds)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _find(results: list[Result], side: str, model: str, rows: int, conc: int) -> Result | None:
    for result in results:
        if (result.side, result.model, result.rows, result.concurrency) == (
            side,
            model,
            rows,
            conc,
        ):
            return result
    return None


def _ratio(results: list[Result], model: str, rows: int, conc: int, peer: str) -> float | None:
    ours = _find(results, "perfml", model, rows, conc)
    if peer == "floor":
        theirs = [_find(results, "floor", "floor", rows, conc)]
    else:
        theirs = [_find(results, s, model, rows, conc) for s in ("mlserver", "mlserver+batch")]
    # A run with failed requests is not a throughput: its errors are answered fast.
    best = max((r.rps for r in theirs if r is not None and not r.errors), default=0.0)
    return None if ours is None or not best else round(ours.rps / best, 2)


def report(
    results: list[Result],
    args: argparse.Namespace,
    created: bool,
    perfml_runtime: bool,
    loop: str,
    http: str,
    seconds: float,
) -> None:
    header = f"{'server':<15} {'model':<8} {'rows':>4} {'conc':>4} {'req/s':>9}"
    print(f"{header} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for r in results:
        print(
            f"{r.side:<15} {r.model:<8} {r.rows:>4} {r.concurrency:>4} {r.rps:>9.0f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.errors:>6}"
        )
    default_c8 = _find(results, "perfml", "default", 1, 8)
    trivial_c8 = _find(results, "perfml", "trivial", 1, 8)
    figures: dict[str, Any] = {
        "rps_vs_mlserver_trivial_c8": _ratio(results, "trivial", 1, 8, "mlserver"),
        "rps_vs_mlserver_default_c8": _ratio(results, "default", 1, 8, "mlserver"),
        "rps_vs_floor_trivial_c8": _ratio(results, "trivial", 1, 8, "floor"),
        "p99_ms_c8": None if default_c8 is None else round(default_c8.p99_ms, 2),
        "p99_ms_trivial_c8": None if trivial_c8 is None else round(trivial_c8.p99_ms, 2),
    }
    unbatched = _find(results, "mlserver", "default", 1, 8)
    if default_c8 is not None and unbatched is not None and unbatched.rps:
        figures["rps_vs_mlserver_nobatch_default_c8"] = round(default_c8.rps / unbatched.rps, 2)
    if not args.quick:
        for conc in (1, 32):
            figures[f"rps_vs_mlserver_default_c{conc}"] = _ratio(
                results, "default", 1, conc, "mlserver"
            )
    figures["results"] = [r.__dict__ for r in results]
    print()
    targets = [
        ("rps_vs_mlserver_trivial_c8", ">= 3"),
        ("rps_vs_floor_trivial_c8", ">= 0.3"),
        ("rps_vs_mlserver_default_c8", ">= 2"),
        ("rps_vs_mlserver_nobatch_default_c8", ">= 2 (same answers)"),
        ("rps_vs_mlserver_default_c32", ">= 2"),
        ("rps_vs_mlserver_default_c1", ">= 1"),
        ("p99_ms_c8", "< 20 (default detector, 1 row)"),
    ]
    for key, target in targets:
        if key in figures:
            print(f"{key:<30} {figures[key]!s:>7}   target {target}")
    note = "created now" if created else "reused"
    runtime = "perfml.serving.mlserver.PerfmlRuntime" if perfml_runtime else "the benchmark's"
    print(
        f"\nMLServer {mlserver_version()} environment at {MLSERVER_VENV}: {note}; default "
        f"detector through {runtime} runtime; settings: parallel_workers 1 (default), "
        f"batching off {BATCH_OFF}, on {BATCH_ON}"
    )
    print(f"perfml and floor: uvicorn --loop {loop} --http {http}; {seconds:g} s per point")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
