# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the scripts that source it
# Settings shared by the scripts of scripts/cluster.sh (sourced, not run).
#
# Everything the build makes is kept in .cache/k8s/<version>/ (binaries, Debian packages unpacked,
# system images), so that a second build finds it there and does nothing. What a running cluster
# writes (certificates, etcd, containerd, kubelet, logs) lives in .cache/k8s/state/ and is
# deleted by `down`, logs excepted (.cache/k8s/logs/, overwritten by the next `up`).

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# .cache may be a symlink: mounts, and the paths kubelet and containerd report, use the real path.
cache=$(realpath -m "$repo/.cache")

K8S_VERSION=${K8S_VERSION:-v1.34.4}         # k8s.io/kubernetes from the Go module proxy
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.4} # github.com/coredns/coredns from the Go module proxy
PAUSE_IMAGE=registry.k8s.io/pause:3.10      # built from pause.c in the kubernetes module
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$COREDNS_VERSION

KB=$cache/k8s/$K8S_VERSION   # build output, kept between runs
KS=$cache/k8s/state          # state of the running cluster, deleted by down
KL=$cache/k8s/logs           # logs of the last run

# The cluster's addresses: a node IP on a port-less bridge, pods on a second bridge, Services
# routed to the first. None of them is routed off the machine (see the egress guard in up.sh).
NODE_NAME=cpu-pipeline-node
NODE_IP=10.250.255.1
NODE_BRIDGE=cpnode0
POD_BRIDGE=cpcni0
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
SVC_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
GUARD_TABLE=2244              # routing table (and rule priority) of the egress guard
GUARD_TAG=cpu-pipeline-egress-guard
# Ports on 127.0.0.1 and the node IP, away from the defaults so nothing else on the machine clashes.
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
ETCD_METRICS_PORT=23810

KUBECONFIG_ADMIN=$KS/pki/admin.kubeconfig
CTR_SOCK=$KS/run/containerd.sock

kctl() { "$KB/bin/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctrk() { ctr -a "$CTR_SOCK" -n k8s.io "$@"; }
# The interface of the default route (where traffic would leave the machine).
uplink() { ip -4 route show default | awk '!found { for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); found = 1; break } }'; }
