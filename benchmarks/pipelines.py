"""The local runner's overhead and throughput, against kfp's local SubprocessRunner.

Claims measured:
- overhead per step (ms) of :class:`~perfml.pipelines.runner.LocalRunner` on a two-step
  pipeline of no-op steps, against kfp's local ``SubprocessRunner`` on the same two-step
  pipeline in the same run (ratio perfml / kfp; target at most 0.5). kfp runs in a virtual
  environment of its own (``~/.cache/perfml-bench-kfp``, created once with the version pinned
  in ``constraints.txt``); its components skip kfp's per-step ``pip install`` of itself
  (``install_kfp_package=False``), kfp's best case;
- throughput of 200 tiny jobs (jobs/s) with the runner's capacity at 2 CPUs;
- the training pipeline on a generated fleet of 100 hosts over 3 months (time and the peak
  RSS of the largest process of ``perfml train``: the runner or a step).

The steps of both sides are no-ops written to a module in the scratch folder, so that a
worker imports only them, and both sides are timed around the pipeline run alone.

    python benchmarks/pipelines.py [--quick] [--json FILE] [--dir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KFP_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "perfml-bench-kfp"

PERFML_STEPS = """
from perfml.pipelines import Resources, step


@step
def noop_a() -> int:
    return 1


@step
def noop_b(x: int) -> int:
    return x


@step(resources=Resources(cpu=1, memory="64Mi"))
def tiny(i: int) -> int:
    return i
"""

KFP_SIDE = """
import json, sys, tempfile, time
from kfp import dsl, local


@dsl.component(install_kfp_package=False)
def noop_a() -> int:
    return 1


@dsl.component(install_kfp_package=False)
def noop_b(x: int) -> int:
    return x


@dsl.pipeline(name="two-noops")
def two() -> int:
    return noop_b(x=noop_a().output).output


local.init(
    runner=local.SubprocessRunner(use_venv=False),
    pipeline_root=tempfile.mkdtemp(),
    raise_on_error=True,
)
two()  # warm-up
seconds = []
for _ in range(int(sys.argv[1])):
    begin = time.perf_counter()
    two()
    seconds.append(time.perf_counter() - begin)
print(json.dumps(seconds))
"""


def kfp_version() -> str:
    found = re.search(r"^kfp==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit("constraints.txt pins no kfp version")
    return found.group(1)


def kfp_python() -> tuple[Path, bool]:
    """The Python of the kfp environment, and whether it had to be created now."""
    python = KFP_VENV / "bin" / "python"
    version = kfp_version()
    check = [str(python), "-c", f"import kfp; assert kfp.__version__ == {version!r}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, False
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(KFP_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"kfp=={version}"], check=True)
    return python, True


def perfml_overhead(scratch: Path, runs: int) -> float:
    """Median seconds per step of the two-step no-op pipeline on the local runner."""
    from perfml.metadata import MetadataDatabase, sqlite_url
    from perfml.pipelines import Pipeline, Ref, Resources, Task
    from perfml.pipelines.history import RunHistory
    from perfml.pipelines.runner import LocalRunner

    steps = importlib.import_module("bench_steps")
    database = MetadataDatabase(sqlite_url(scratch / "overhead.db"))
    history = RunHistory(database)
    runner = LocalRunner(history, scratch / "overhead", Resources(cpu=2, memory="8Gi"))
    pipe = Pipeline(
        "two-noops", [Task("a", steps.noop_a), Task("b", steps.noop_b, {"x": Ref("a")})]
    )
    runner.run(pipe)  # warm-up
    seconds = []
    for _ in range(runs):
        begin = time.perf_counter()
        run = runner.run(pipe)
        seconds.append(time.perf_counter() - begin)
        if run.state.value != "Succeeded":
            raise SystemExit(f"perfml run {run.run_id} {run.state.value}: {run.message}")
    database.close()
    return statistics.median(seconds) / 2


def kfp_overhead(scratch: Path, runs: int) -> tuple[float, bool]:
    python, created = kfp_python()
    script = scratch / "kfp_side.py"
    script.write_text(KFP_SIDE)
    done = subprocess.run(
        [str(python), str(script), str(runs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=scratch,
    )
    return statistics.median(json.loads(done.stdout.strip().splitlines()[-1])) / 2, created


def throughput(scratch: Path, jobs: int) -> float:
    """Jobs per second of ``jobs`` independent tiny 1-CPU jobs, the runner's capacity 2 CPUs."""
    from perfml.metadata import MetadataDatabase, sqlite_url
    from perfml.pipelines import Pipeline, Resources, Task
    from perfml.pipelines.history import RunHistory
    from perfml.pipelines.runner import LocalRunner

    steps = importlib.import_module("bench_steps")
    database = MetadataDatabase(sqlite_url(scratch / "throughput.db"))
    history = RunHistory(database)
    runner = LocalRunner(history, scratch / "throughput", Resources(cpu=2, memory="8Gi"))
    pipe = Pipeline("tiny-jobs", [Task(f"j{i}", steps.tiny, {"i": i}) for i in range(jobs)])
    begin = time.perf_counter()
    run = runner.run(pipe)
    elapsed = time.perf_counter() - begin
    database.close()
    if run.state.value != "Succeeded":
        raise SystemExit(f"throughput run {run.state.value}: {run.message}")
    return jobs / elapsed


MEASURE = """
import resource, subprocess, sys, time
begin = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - begin
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(done.returncode, elapsed, peak_kb)
sys.stderr.write(done.stdout[-2000:] + done.stderr[-2000:])
"""


def training(scratch: Path, hosts: int, months: int) -> tuple[float, float] | str:
    """Seconds and peak RSS (MB) of ``perfml train`` on a generated fleet, or why skipped."""
    try:
        importlib.import_module("perfml.pipelines.training").build_training_pipeline()
    except (ImportError, AttributeError) as error:
        return f"build_training_pipeline is not importable yet ({error})"
    perfml = [str(Path(sys.executable).with_name("perfml")), "-w", str(scratch / "ws")]
    fleet = scratch / "fleet"
    size = ["--hosts", str(hosts), "--months", str(months)]
    prepare = [
        [*perfml, "generate", "fleet", "--out", str(fleet), *size],
        [*perfml, "ingest", "nab", str(fleet)],
    ]
    for command in prepare:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            return f"preparing the fleet failed: {' '.join(command[3:5])}: {done.stderr[-500:]}"
    end = f"2024-{1 + months:02d}-01" if months < 12 else "2025-01-01"
    train = [*perfml, "train", "--data", "cpu_util", "--window", f"2024-01-01:{end}"]
    done = subprocess.run([sys.executable, "-c", MEASURE, *train], capture_output=True, text=True)
    code, elapsed, peak_kb = done.stdout.split()
    if int(code):
        return f"perfml train failed (exit {code}): {done.stderr[-800:]}"
    return float(elapsed), int(peak_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, a smaller fleet")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    runs, jobs, hosts, months = (5, 40, 10, 1) if args.quick else (20, 200, 100, 3)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        scratch = Path(tmp)
        (scratch / "bench_steps.py").write_text(textwrap.dedent(PERFML_STEPS))
        sys.path.insert(0, str(scratch))
        ours = perfml_overhead(scratch, runs)
        theirs, created = kfp_overhead(scratch, runs)
        per_s = throughput(scratch, jobs)
        trained = training(scratch, hosts, months)

    figures: dict[str, Any] = {
        "overhead_ms_per_step": round(ours * 1000, 1),
        "kfp_overhead_ms_per_step": round(theirs * 1000, 1),
        "overhead_vs_kfp": round(ours / theirs, 3),
        "jobs_per_s": round(per_s, 1),
        "training_seconds": None if isinstance(trained, str) else round(trained[0], 2),
        "training_peak_rss_mb": None if isinstance(trained, str) else round(trained[1], 1),
    }
    rows = [
        ("overhead per step, perfml LocalRunner", f"{figures['overhead_ms_per_step']} ms"),
        ("overhead per step, kfp SubprocessRunner", f"{figures['kfp_overhead_ms_per_step']} ms"),
        ("ratio perfml / kfp (target <= 0.5)", f"{figures['overhead_vs_kfp']}"),
        (f"throughput, {jobs} tiny jobs, 2 CPUs", f"{figures['jobs_per_s']} jobs/s"),
    ]
    if isinstance(trained, str):
        rows.append((f"training, {hosts} hosts x {months} months", f"skipped: {trained}"))
    else:
        rows.append((f"training, {hosts} hosts x {months} months", f"{trained[0]:.2f} s"))
        rows.append(("training peak RSS (largest process)", f"{trained[1]:.0f} MB"))
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    note = "created now" if created else "reused"
    print(f"\nkfp {kfp_version()} environment at {KFP_VENV}: {note}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
