"""The Dockerfile, linted as hadolint would: a pinned base, the lock file, no cache, a non-root
numeric user before the entrypoint, a health check, nothing fetched by ``ADD``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
    return found


def problems(text: str) -> list[str]:
    """What the Dockerfile does wrong, one line each (empty: it passes)."""
    found: list[str] = []
    steps = instructions(text)
    keywords = [s.keyword for s in steps]
    froms = [s for s in steps if s.keyword == "FROM"]
    if not froms:
        return ["no FROM"]
    for step in froms:
        image = step.arguments.split()[0]
        if "@sha256:" not in image and (":" not in image or image.endswith(":latest")):
            found.append(f"line {step.line}: base image {image!r} is not pinned (DL3006/DL3007)")
        elif "@sha256:" not in image and not re.search(r":\d+\.\d+\.\d+", image):
            found.append(f"line {step.line}: base image {image!r}: pin an exact version")
    for step in steps:
        words = step.arguments
        if step.keyword == "ADD" and re.search(r"https?://", words):
            found.append(f"line {step.line}: ADD of a URL (DL3020): use a checked download")
        if step.keyword == "RUN":
            if re.search(r"\bsudo\b", words):
                found.append(f"line {step.line}: sudo (DL3004)")
            if re.search(r"\bpip3? install\b", words):
                if "--no-cache-dir" not in words:
                    found.append(f"line {step.line}: pip install without --no-cache-dir (DL3042)")
                if not re.search(r"(-c|--constraint)\s+constraints\.txt", words):
                    found.append(f"line {step.line}: pip install without the lock file")
            if "apt-get install" in words:
                if "--no-install-recommends" not in words:
                    found.append(f"line {step.line}: apt-get without --no-install-recommends")
                if "rm -rf /var/lib/apt/lists" not in words:
                    found.append(f"line {step.line}: apt lists not removed (DL3009)")
    users = [s for s in steps if s.keyword == "USER"]
    entry = [i for i, s in enumerate(steps) if s.keyword == "ENTRYPOINT"]
    if not users:
        found.append("no USER: the image runs as root (DL3002)")
    else:
        last = users[-1]
        name = last.arguments.split(":")[0]
        if name in {"root", "0"}:
            found.append(f"line {last.line}: the last USER is root (DL3002)")
        elif not name.isdigit():
            found.append(f"line {last.line}: USER {name!r} is not numeric (runAsNonRoot)")
        if entry and steps.index(last) > entry[-1]:
            found.append("USER is set after ENTRYPOINT")
    if "HEALTHCHECK" not in keywords:
        found.append("no HEALTHCHECK")
    if "WORKDIR" not in keywords:
        found.append("no WORKDIR")
    if not entry:
        found.append("no ENTRYPOINT")
    return found


def test_the_dockerfile_passes_the_lint() -> None:
    assert problems(DOCKERFILE.read_text()) == []


def test_the_dockerfile_builds_what_the_cluster_runs() -> None:
    steps = instructions(DOCKERFILE.read_text())
    by_keyword = {s.keyword: s.arguments for s in steps}
    assert by_keyword["ENTRYPOINT"] == '["perfml"]'
    assert set(by_keyword["EXPOSE"].split()) == {"8080", "8088", "9102"}
    assert "/v2/health/live" in by_keyword["HEALTHCHECK"]
    assert "curl" not in by_keyword["HEALTHCHECK"]
    assert by_keyword["USER"].split(":")[0] == "10001"  # the UID the manifests run as
    assert re.match(r"python:3\.11\.\d+-slim-bookworm", by_keyword["FROM"])
    install = next(s.arguments for s in steps if "pip install" in s.arguments)
    assert re.search(r"\.\[postgres,oci,kubeflow\]", install)
    labels = " ".join(s.arguments for s in steps if s.keyword == "LABEL")
    for key in ("title", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "benchmarks"} <= ignored
    assert not {"src", "constraints.txt", "pyproject.toml", "README.md"} & ignored


TAIL = 'WORKDIR /a\nHEALTHCHECK CMD true\nENTRYPOINT ["x"]\n'


def dockerfile(*lines: str, tail: str = TAIL) -> str:
    return "\n".join(lines) + "\n" + tail


BASE = "FROM python:3.11.9-slim"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (dockerfile("FROM python:latest", "USER 10001"), "not pinned"),
        (dockerfile("FROM python", "USER 10001"), "not pinned"),
        (dockerfile(BASE), "no USER"),
        (dockerfile(BASE, tail=TAIL + "USER 10001\n"), "after ENTRYPOINT"),
        (dockerfile(BASE, "USER root"), "root"),
        (dockerfile(BASE, "RUN pip install -c constraints.txt .", "USER 1"), "no-cache-dir"),
        (dockerfile(BASE, "RUN pip install --no-cache-dir .", "USER 1"), "lock file"),
        (dockerfile(BASE, "ADD https://x.example/a.tgz /a", "USER 1"), "ADD of a URL"),
        (dockerfile(BASE, "RUN sudo true", "USER 1"), "sudo"),
        (
            dockerfile(BASE, "RUN apt-get update && \\", "    apt-get install -y git", "USER 1"),
            "no-install-recommends",
        ),
        (dockerfile(BASE, "USER 1", tail='WORKDIR /a\nENTRYPOINT ["x"]\n'), "no HEALTHCHECK"),
    ],
)
def test_the_lint_catches_each_mistake(text: str, problem: str) -> None:
    assert any(problem in found for found in problems(text)), problems(text)
