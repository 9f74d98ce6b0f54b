# syntax=docker/dockerfile:1
# The perfml image: every command of the perfml CLI (serve, dashboard, controller, runs,
# pipeline steps and Kubeflow components), with the PostgreSQL, OCI and Kubeflow extras.
#   docker build -t ghcr.io/perfml/perfml:0.1.0 .
# The install is pinned by the lock file constraints.txt, so a rebuild gives the same packages.
FROM python:3.11.13-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="perfml" \
      org.opencontainers.image.description="Operate anomaly-detection services for the performance metrics of a fleet" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/perfml/perfml" \
      org.opencontainers.image.url="https://github.com/perfml/perfml" \
      org.opencontainers.image.documentation="https://perfml.readthedocs.io" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="perfml"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    PERFML_CONFIG=/etc/perfml/perfml.yaml

WORKDIR /opt/perfml
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir -c constraints.txt ".[postgres,oci,kubeflow]" \
    && rm -rf /opt/perfml/src /opt/perfml/build

# The default detector's compiled kernel, built once here (a process loads it in a second
# instead of compiling it); the cache stays writable for a CPU the image was not built on.
RUN python -c "from perfml.detectors import create; create('streaming').update(0, 1.0)" \
    && chmod -R a+rwX /tmp/numba

# A numeric non-root user, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 perfml \
    && useradd --system --uid 10001 --gid 10001 --home-dir /workspace --no-create-home perfml \
    && mkdir -p /workspace /etc/perfml \
    && chown 10001:10001 /workspace

WORKDIR /workspace
USER 10001:10001

# serving (Open Inference Protocol v2), dashboard, job metrics
EXPOSE 8080 8088 9102

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["perfml"]
CMD ["--help"]
