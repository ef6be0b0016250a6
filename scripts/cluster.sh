#!/usr/bin/env bash
# A single-node Kubernetes cluster on this machine, made and run by the project itself, to deploy
# k8s/overlays/local for real (test/e2e/cluster.e2e.ts). Root; Debian packages, the Go module
# proxy, Maven Central and PyPI only; pod traffic never leaves the machine (scripts/cluster/guard.sh).
#
#   bash scripts/cluster.sh build    # Kubernetes, CoreDNS, pause into .cache/k8s/<version>/ (once; ~12-15 min cold)
#   bash scripts/cluster.sh images   # the overlay's images into .cache/images/*.tar (Docker; stand-ins cached)
#   bash scripts/cluster.sh up       # guard first, then etcd ... CoreDNS (~30 s); any failure tears down
#   bash scripts/cluster.sh load     # imports .cache/images/*.tar into the cluster's containerd
#   bash scripts/cluster.sh guard    # the egress guard's counters (and whether it is in place)
#   bash scripts/cluster.sh status   # exit 0 if the cluster is up; prints the nodes and pods
#   bash scripts/cluster.sh kubectl ARGS...   # the cluster's own kubectl with its admin kubeconfig
#   bash scripts/cluster.sh ctr ARGS...       # ctr on the cluster's containerd, namespace k8s.io
#   bash scripts/cluster.sh down     # stops everything, restores the host; safe to run again
#   bash scripts/cluster.sh run CMD...        # up, load, CMD, down (down also when CMD or up fails)
#
# Versions: K8S_VERSION (v1.34.4), COREDNS_VERSION (v1.12.4). Kubeconfig: .cache/k8s/state/pki/admin.kubeconfig.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/cluster/common.sh
source "$here/cluster/common.sh"
# Node 24 (the image's Node) for the scripts in TypeScript, where it is not first on PATH already.
# shellcheck source=.ci/node24.sh
source "$repo/.ci/node24.sh"

is_up() { [ -f "$KS/up.complete" ] && kctl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; }

load() {
  is_up || { echo "cluster.sh load: the cluster is not up" >&2; return 1; }
  local list=$cache/images/local-overlay.list image tar
  [ -s "$list" ] || { echo "cluster.sh load: no images: run scripts/cluster.sh images first" >&2; return 1; }
  while read -r image; do
    tar=$cache/images/$(printf '%s' "$image" | tr '/:' '__').tar
    [ -s "$tar" ] || { echo "cluster.sh load: $tar is missing: run scripts/cluster.sh images" >&2; return 1; }
    ctrk images import "$tar" >/dev/null
    echo "[cluster load] $image imported ($(du -m "$tar" | cut -f1) MB)" >&2
  done <"$list"
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
  build) exec bash "$here/cluster/build.sh" ;;
  images) exec bash "$here/cluster/images.sh" ;;
  up) exec bash "$here/cluster/up.sh" ;;
  down) exec bash "$here/cluster/down.sh" ;;
  load) load ;;
  guard)
    # shellcheck source=scripts/cluster/guard.sh
    source "$here/cluster/guard.sh"
    guard_counters
    if guard_check; then echo "guard: in place"; else echo "guard: NOT in place"; exit 1; fi
    ;;
  status)
    is_up || { echo "cluster: not up"; exit 1; }
    kctl get nodes -o wide && kctl get pods -A -o wide
    ;;
  kubectl) exec "$KB/bin/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@" ;;
  ctr) exec ctr -a "$CTR_SOCK" -n k8s.io "$@" ;;
  run)
    [ $# -gt 0 ] || { echo "usage: scripts/cluster.sh run COMMAND [ARGS...]" >&2; exit 2; }
    trap 'bash "$here/cluster/down.sh"' EXIT
    bash "$here/cluster/up.sh"
    load
    KUBECONFIG=$KUBECONFIG_ADMIN "$@"
    ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
