#!/usr/bin/env bash
# Makes sure what the etcd store needs is installed: `protoc` (Debian's protobuf-compiler), which
# the etcd-client crate runs at build time, and `etcd` (Debian's etcd-server), which the tests
# start themselves on free loopback ports with temporary data dirs. Installs what is missing with
# apt-get; starts nothing. Idempotent. Fails loudly when a package cannot be had.
set -euo pipefail
log() { echo "ensure-etcd: $*" >&2; }

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
[[ ${#missing[@]} -eq 0 ]] && exit 0

log "installing Debian's ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" >/tmp/hyperkube-etcd-install.log 2>&1 || {
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q "${missing[@]}" >/tmp/hyperkube-etcd-install.log 2>&1 ||
        { cat /tmp/hyperkube-etcd-install.log >&2; log "ERROR: could not install ${missing[*]}"; exit 1; }
}
command -v protoc >/dev/null 2>&1 || { log "ERROR: protoc is still missing"; exit 1; }
command -v etcd >/dev/null 2>&1 || { log "ERROR: etcd is still missing"; exit 1; }
log "$(etcd --version | head -1), $(protoc --version)"
