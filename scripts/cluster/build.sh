#!/usr/bin/env bash
# `scripts/cluster.sh build`: everything a single-node cluster needs, from package registries only,
# into .cache/k8s/<version>/; each part is skipped when its stamp says it is there already.
#   - Debian: containerd, runc, iptables installed; etcd and the CNI plugins unpacked (not installed);
#   - Kubernetes $K8S_VERSION from the Go module proxy: the module zip has no staging/ folder, so its
#     ./staging replaces are pointed at the published k8s.io/* modules of the same release;
#   - CoreDNS from the Go module proxy; the pause image from pause.c in the Kubernetes module;
#     both as image tarballs for `ctr images import` (scripts/cluster/mkimage.py, no daemon).
# About 12-15 minutes on 2 cores with cold Go caches, under a minute with warm ones.
set -euo pipefail
# shellcheck source=scripts/cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export PATH=/usr/local/go/bin:$PATH CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local}
t0=$SECONDS
log() { printf '[cluster build +%ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get)"
command -v go >/dev/null || die "Go is required (the Kubernetes binaries are built from the Go module proxy)"
mkdir -p "$KB/bin" "$KB/root" "$KB/images"

# 1. Debian packages
pkgs=(containerd runc iptables nftables gcc libc6-dev openssl python3)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ] || [ ! -f "$KB/root/.complete" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ "${#missing[@]}" = 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -f "$KB/root/.complete" ]; then
  debs=$(mktemp -d); chmod 755 "$debs"   # apt-get download runs as _apt
  (cd "$debs" && apt-get download -qq etcd-server etcd-client containernetworking-plugins)
  for f in "$debs"/*.deb; do dpkg -x "$f" "$KB/root"; done
  ls "$debs" >"$KB/root/.complete"
  rm -rf "$debs"
  log "Debian etcd and CNI plugins unpacked: $(tr '\n' ' ' <"$KB/root/.complete")"
else
  log "Debian etcd and CNI plugins: cached"
fi

# 2. Kubernetes
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
src=$cache/k8s/src-$K8S_VERSION
if [ ! -f "$KB/bin/.kubernetes-$K8S_VERSION" ]; then
  staging=v0.${K8S_VERSION#v1.}
  dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$src"; cp -r "$dir" "$src"; chmod -R u+w "$src"
  rm -rf "$src/go.work" "$src/go.work.sum" "$src/vendor"
  sed -i -E "s#^(\s+)(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+\$#\1\2 => \2 $staging#" "$src/go.mod"
  log "kubernetes $K8S_VERSION source ready (staging modules -> $staging)"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
  ld+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  for c in "${components[@]}"; do
    (cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" nice -n 19 go build -ldflags "$ld" -o "$KB/bin/$c" "./cmd/$c")
    log "built $c"
  done
  # The pause container: the real one, from the module (static, a few KB).
  rm -rf "$KB/images/pause-root"; mkdir -p "$KB/images/pause-root"
  gcc -Os -static -DVERSION=3.10-local -o "$KB/images/pause-root/pause" "$src/build/pause/linux/pause.c"
  strip "$KB/images/pause-root/pause"
  python3 "$repo/scripts/cluster/mkimage.py" "$KB/images/pause-root" "$PAUSE_IMAGE" "$KB/images/pause.tar" \
    --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
  rm -rf "$KB/images/pause-root" "$src"
  touch "$KB/bin/.kubernetes-$K8S_VERSION"
else
  log "kubernetes $K8S_VERSION: cached"
fi

# 3. CoreDNS (its go.mod has no replace directives: a plain go install works)
if [ ! -f "$KB/bin/.coredns-$COREDNS_VERSION" ]; then
  GOBIN=$KB/bin GOFLAGS=-buildvcs=false nice -n 19 go install -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  rm -rf "$KB/images/coredns-root"; mkdir -p "$KB/images/coredns-root/etc"
  cp "$KB/bin/coredns" "$KB/images/coredns-root/coredns"
  echo 'nonroot:x:65532:65532::/:/sbin/nologin' >"$KB/images/coredns-root/etc/passwd"
  python3 "$repo/scripts/cluster/mkimage.py" "$KB/images/coredns-root" "$COREDNS_IMAGE" "$KB/images/coredns.tar" \
    --entrypoint '["/coredns"]' --user 65532:65532 >/dev/null
  rm -rf "$KB/images/coredns-root"
  touch "$KB/bin/.coredns-$COREDNS_VERSION"
  log "built coredns $COREDNS_VERSION"
else
  log "coredns $COREDNS_VERSION: cached"
fi

for c in "${components[@]}" coredns; do [ -x "$KB/bin/$c" ] || die "$KB/bin/$c is missing"; done
[ -x "$KB/root/usr/bin/etcd" ] || die "etcd is missing from $KB/root"
log "done: $("$KB/bin/kubelet" --version), coredns $COREDNS_VERSION, in ${KB#"$cache"/}"
