#!/usr/bin/env bash
# Benchmarks shoal against dask.distributed, Ray and multiprocessing in one
# run. Everything is installed into a throwaway virtualenv; the table is
# printed and written to benches/results.md.
#   bash benches/run.sh            # all frameworks
#   bash benches/run.sh shoal dask # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d -t shoal-bench-XXXXXX)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet . "dask[distributed,dataframe,array,bag]" ray pandas beautifulsoup4 requests lxml cssselect websocket-client
"$venv/bin/python" benches/compare.py "$@"
# The seeds' real workloads, shoal and Dask side by side.
"$venv/bin/python" benches/seeds.py
# The tutorial's first steps, each on a fresh cluster.
"$venv/bin/python" benches/tutorial_steps.py shoal dask
# Faults under load: a worker SIGKILLed every 0.5 s during a 10,000-task map.
"$venv/bin/python" benches/chaos.py shoal dask
# Results three times the workers' memory limit: spilled and read back.
"$venv/bin/python" benches/spill.py shoal dask
# Data that moves: GB/s between workers and the client, and dask collections.
"$venv/bin/python" benches/transfer.py shoal dask
"$venv/bin/python" benches/dask_collections.py shoal dask
# What the token and TLS cost on a 10,000-task map.
"$venv/bin/python" benches/security_cost.py
# What an open dashboard page costs (needs chromium).
if command -v chromium >/dev/null 2>&1; then
    "$venv/bin/python" benches/dashboard.py
fi
