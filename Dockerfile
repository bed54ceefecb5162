# The shoal image for schedulers and workers: `shoal scheduler ...` or
# `shoal worker ...` (the entry point is `shoal`). Build from the
# repository's root:  docker build -t shoal .
# The first stage compiles the Rust engine (a few minutes); the second holds
# only Python and the wheel.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY crates crates
COPY python python
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 1000 shoal
USER shoal
WORKDIR /home/shoal
# 8786: clients and workers; 8787: the dashboard. Workers also serve their
# results on a port of their own, chosen at start.
EXPOSE 8786 8787
ENTRYPOINT ["shoal"]
