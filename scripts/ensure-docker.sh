#!/usr/bin/env bash
# Makes sure a Docker engine answers on /var/run/docker.sock: installs Debian's docker.io when
# dockerd is missing and starts dockerd in the background when it is not running. Idempotent.
# Fails loudly when the engine cannot be had.
set -euo pipefail
log() { echo "ensure-docker: $*" >&2; }

if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q docker.io >/tmp/hyperkube-docker-install.log 2>&1 || {
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q docker.io >/tmp/hyperkube-docker-install.log 2>&1 ||
            { cat /tmp/hyperkube-docker-install.log >&2; log "ERROR: could not install docker.io"; exit 1; }
    }
fi
log "starting dockerd (log: /tmp/hyperkube-dockerd.log)"
nohup dockerd >/tmp/hyperkube-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
        log "Docker $(docker version --format '{{.Server.Version}}') is up"
        exit 0
    fi
    sleep 0.5
done
tail -20 /tmp/hyperkube-dockerd.log >&2
log "ERROR: dockerd did not come up"
exit 1
