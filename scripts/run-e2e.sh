#!/usr/bin/env bash
# Runs the end-to-end tests (tests/e2e) against a hyperkube binary with the
# upstream kubectl binaries and the official Python client.
#
#   scripts/run-e2e.sh                 # build target/debug/hyperkube, run everything
#   scripts/run-e2e.sh -k apply -x     # extra arguments go to pytest
#
# HYPERKUBE_BIN=/path/to/hyperkube skips the cargo build and tests that binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/install-test-deps.sh" >&2
# shellcheck disable=SC1091
. "$ROOT/.e2e/env.sh"

if [[ -z "${HYPERKUBE_BIN:-}" ]]; then
    echo "run-e2e: cargo build --bin hyperkube" >&2
    cargo build --bin hyperkube >&2
    export HYPERKUBE_BIN="$ROOT/target/debug/hyperkube"
fi

exec "$E2E_VENV/bin/python" -m pytest "$ROOT/tests/e2e" -ra "$@"
