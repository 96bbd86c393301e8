#!/usr/bin/env bash
# Builds the images hyperkube runs, offline (no registry is reachable, so no FROM):
#
#   hyperkube:latest            /hyperkube (the given binary, stripped) and the shared libraries
#                               it links, a symlink per component (/kubelet, /apiserver, ...),
#                               the static pods of manifests/ under /etc/kubernetes/manifests,
#                               and the host's iptables and ip with their libraries (the proxy's
#                               tools); entrypoint /hyperkube, default command `pause`: the pod
#                               infra image, and the image the control plane runs from. Its label
#                               io.hyperkube.binary-sha256 names the binary, so `hyperkube up`
#                               knows when the image is stale.
#   hyperkube-test/busybox:1    busybox-static with its applets, for tests and examples
#
#   images/hyperkube/build.sh [path/to/hyperkube]    (default: target/release/hyperkube)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-$ROOT/target/release/hyperkube}"
[[ -x "$BIN" ]] || { echo "build.sh: $BIN is not an executable; build it first" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# hyperkube: the binary plus exactly the libraries ldd says it needs.
ROOTFS="$WORK/hyperkube"
mkdir -p "$ROOTFS/tmp" "$ROOTFS/etc/kubernetes/manifests" "$ROOTFS/run"
strip -o "$ROOTFS/hyperkube" "$BIN"
with_libraries() { # FILE...: copies each file and the libraries ldd says it needs into the image
    local file lib
    for file in "$@"; do
        mkdir -p "$ROOTFS$(dirname "$file")"
        cp -L "$file" "$ROOTFS$file"
        ldd "$file" 2>/dev/null | awk '/=> \// {print $3} /^[[:space:]]*\/lib/ {print $1}' | while read -r lib; do
            mkdir -p "$ROOTFS$(dirname "$lib")"
            cp -L "$lib" "$ROOTFS$lib"
        done
    done
}
with_libraries "$BIN"
rm -f "$ROOTFS$BIN"
"$ROOTFS/hyperkube" --make-symlinks "$ROOTFS" >/dev/null
for link in "$ROOTFS"/*; do
    [[ -L "$link" ]] && ln -sf hyperkube "$link"
done
cp "$ROOT"/manifests/*.json "$ROOTFS/etc/kubernetes/manifests/"
# The proxy's tools: iptables (the nft or legacy multi-binary and its extensions) and ip.
IPTABLES="$(readlink -f "$(command -v iptables)")"
IP="$(readlink -f "$(command -v ip)")"
# Extensions load from the directory iptables was built with: libxtables' real one (/usr/lib/...).
XTABLES="$(dirname "$(readlink -f "$(ldd "$IPTABLES" | awk '/libxtables/ {print $3}')")")/xtables"
with_libraries "$IPTABLES" "$IP" "$XTABLES"/*.so
for tool in iptables iptables-restore iptables-save; do
    ln -sf "$IPTABLES" "$ROOTFS/usr/sbin/$tool"
done
ln -sf "$IP" "$ROOTFS/usr/sbin/ip"
cp /etc/protocols "$ROOTFS/etc/protocols"
echo "root:x:0:0:root:/:/hyperkube" >"$ROOTFS/etc/passwd"
replace() { # IMAGE OLD_ID: removes the image IMAGE pointed to before, unless a container uses it
    local new
    new="$(docker images -q "$1")"
    if [[ -n "$2" && "$2" != "$new" ]]; then docker rmi "$2" >/dev/null 2>&1 || true; fi
}
OLD_HYPERKUBE="$(docker images -q hyperkube:latest)"
tar -C "$ROOTFS" -c . | docker import \
    -c 'ENTRYPOINT ["/hyperkube"]' -c 'CMD ["pause"]' -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    -c "LABEL io.hyperkube.binary-sha256=$(sha256sum "$BIN" | cut -d' ' -f1)" \
    -m "hyperkube $("$BIN" version 2>/dev/null || true)" - hyperkube:latest >/dev/null
replace hyperkube:latest "$OLD_HYPERKUBE"
echo "built hyperkube:latest ($(du -sh "$ROOTFS" | cut -f1))" >&2

# busybox: Debian's static busybox and the applets tests use.
BUSYBOX="$(command -v busybox || true)"
if [[ -z "$BUSYBOX" ]] || ! ldd "$BUSYBOX" 2>&1 | grep -q "not a dynamic"; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null 2>&1 ||
        { echo "build.sh: cannot install busybox-static" >&2; exit 1; }
    BUSYBOX=/bin/busybox
fi
BB="$WORK/busybox"
mkdir -p "$BB/bin" "$BB/tmp" "$BB/etc" "$BB/www"
cp "$BUSYBOX" "$BB/bin/busybox"
for applet in sh ash cat echo env false grep hostname httpd id kill ls mkdir nc nslookup ps sleep sed test touch true wc wget; do
    ln -s busybox "$BB/bin/$applet"
done
echo "root:x:0:0:root:/:/bin/sh" >"$BB/etc/passwd"
OLD_BUSYBOX="$(docker images -q hyperkube-test/busybox:1)"
tar -C "$BB" -c . | docker import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' - hyperkube-test/busybox:1 >/dev/null
replace hyperkube-test/busybox:1 "$OLD_BUSYBOX"
echo "built hyperkube-test/busybox:1" >&2
