#!/usr/bin/env bash
# Builds the images hyperkube runs, offline (no registry is reachable, so no FROM):
#
#   hyperkube:latest            /hyperkube (the given binary, stripped) and the shared libraries
#                               it links, entrypoint /hyperkube, default command `pause`: the
#                               pod infra image, and the image the control plane runs from
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
mkdir -p "$ROOTFS/tmp" "$ROOTFS/etc"
strip -o "$ROOTFS/hyperkube" "$BIN"
ldd "$BIN" | awk '/=> \// {print $3} /^[[:space:]]*\/lib/ {print $1}' | while read -r lib; do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
done
echo "root:x:0:0:root:/:/hyperkube" >"$ROOTFS/etc/passwd"
replace() { # IMAGE OLD_ID: removes the image IMAGE pointed to before, unless a container uses it
    local new
    new="$(docker images -q "$1")"
    if [[ -n "$2" && "$2" != "$new" ]]; then docker rmi "$2" >/dev/null 2>&1 || true; fi
}
OLD_HYPERKUBE="$(docker images -q hyperkube:latest)"
tar -C "$ROOTFS" -c . | docker import \
    -c 'ENTRYPOINT ["/hyperkube"]' -c 'CMD ["pause"]' \
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
