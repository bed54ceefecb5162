#!/usr/bin/env bash
# Runs every check and test of shoal. Works on a fresh machine with a Rust
# toolchain and Python 3.9+: it builds shoal into a virtualenv (.venv, made
# here unless one is already active) and installs the test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -d .venv ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi

# System packages the tests drive for real: chromium (the dashboard's pages),
# sshd (SSHCluster), Slurm and munge (SLURMCluster), iproute2 (network
# namespaces). Installed when missing and we are root with apt.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ] || missing+=(slurm-wlm)
    command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ] || missing+=(munge)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== system: ${missing[*]}"
        log="$(mktemp)"
        trap 'rm -f "$log"' EXIT
        apt-get update -qq >"$log" 2>&1 || { cat "$log"; exit 1; }
        # One at a time, so a package that fails says which, with apt's words.
        for pkg in "${missing[@]}"; do
            if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >"$log" 2>&1; then
                echo "could not install $pkg:"
                cat "$log"
                exit 1
            fi
        done
    fi
fi

echo "== install (builds the Rust extension with maturin)"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -c tests/constraints.txt ".[test]"

echo "== rust: format, lints, unit and integration tests"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# nextest ends a hung test (see .config/nextest.toml); the end-to-end tests
# also bound themselves, for plain `cargo test`.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --exclude shoal-py --status-level fail
else
    cargo test --workspace --exclude shoal-py --quiet
fi

echo "== python: lints"
ruff check python tests examples benches compat
ruff format --check python tests examples benches compat

echo "== python: the engine's type stub (_engine.pyi) matches the built extension"
(cd tests && python -m mypy.stubtest shoal._engine --allowlist stubtest_allowlist.txt)

echo "== the README's demo: the seed workloads on a local cluster"
python examples/demo.py

echo "== python: end-to-end tests against real clusters"
# Under CI=true a test skipped for a reason not in tests/conftest.py's
# ALLOWED_SKIPS fails the run.
# Run from outside the source tree so the installed package is the one tested.
cd tests
python -m pytest -q -p no:cacheprovider "$@"
