#!/usr/bin/env bash
# `scripts/cluster.sh up`: a single-node Kubernetes cluster on this machine, from what `build` made.
# Order: the host is recorded (for `down` to compare), the egress guard is installed and checked,
# then etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (pulls refused),
# the system images, kubelet, kube-proxy and CoreDNS; the guard is checked again once kube-proxy
# and the CNI plugins have added their rules. Any failure tears everything down again.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=scripts/cluster/common.sh
source "$here/common.sh"
# shellcheck source=scripts/cluster/guard.sh
source "$here/guard.sh"
# shellcheck source=scripts/cluster/host.sh
source "$here/host.sh"

t0=$SECONDS
log() { printf '[cluster up +%ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns; do
  [ -x "$KB/bin/$c" ] || die "$KB/bin/$c is missing: run scripts/cluster.sh build first"
done
for c in containerd ctr runc iptables ip6tables openssl python3; do command -v "$c" >/dev/null || die "$c is missing: run scripts/cluster.sh build first"; done
if [ -f "$KS/up.complete" ] && kill -0 "$(cat "$KS/run/kube-apiserver.pid" 2>/dev/null || echo none)" 2>/dev/null; then
  die "the cluster is already up (scripts/cluster.sh down first)"
fi
[ ! -d "$KS" ] || { log "state of an earlier run found: cleaning it up first"; bash "$here/down.sh"; }

# Addresses and ports this cluster needs must be unused.
for l in "$NODE_BRIDGE" "$POD_BRIDGE"; do ! ip link show "$l" >/dev/null 2>&1 || die "link $l exists already"; done
for net in "$NODE_IP/32" "$POD_CIDR" "$SVC_CIDR"; do
  [ -z "$(ip -4 route show table all to match "$net" | grep -v -E '^(default|unreachable default)' | grep -v 'table local' || true)" ] ||
    die "$net is already routed on this machine: $(ip -4 route show table all to match "$net" | sed -n 1,3p)"
done
for p in $ETCD_CLIENT_PORT $ETCD_PEER_PORT $ETCD_METRICS_PORT 10257 10259 10249 10256 10248; do
  ! grep -q . < <(ss -Htln "sport = :$p") || die "port $p is in use"
done

mkdir -p "$KS"/{run,etc,cni,pki} "$KS/data"/{etcd,containerd,kubelet,pod-logs,cni-ipam} "$KL"
rm -f "$KL"/*.log
# From here on, a failure undoes everything.
# shellcheck disable=SC2154 # status is assigned inside the trap
trap 'status=$?; if [ $status != 0 ]; then log "up failed (exit $status): tearing down (logs in ${KL#"$cache"/})"; bash "$here/down.sh" || true; fi' EXIT

host_snapshot "$KS/host-before"
ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' >"$KS/host-before/links-raw"

start() { # start NAME COMMAND...: in the background, pid in run/NAME.pid, log in logs/NAME.log
  local n=$1; shift
  nohup "$@" >"$KL/$n.log" 2>&1 &
  echo $! >"$KS/run/$n.pid"
  log "started $n (pid $!)"
}
waitfor() { # waitfor WHAT SECONDS COMMAND...
  local what=$1 n=$2 i; shift 2
  for ((i = 0; i < n; i++)); do
    "$@" >/dev/null 2>&1 && { log "$what"; return 0; }
    sleep 1
  done
  die "timed out after ${n}s waiting for: $what"
}

# ---------------------------------------------------------------- host network and the egress guard
ip link add "$NODE_BRIDGE" type bridge   # no 'dummy' driver in this kernel: a bridge without ports
ip addr add "$NODE_IP/32" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
ip route replace "$SVC_CIDR" dev "$NODE_BRIDGE"
# The pod bridge is made here (the CNI bridge plugin adopts it) so that the guard exists before any pod.
ip link add "$POD_BRIDGE" type bridge
ip addr add "${NODE_POD_CIDR%.0/24}.1/24" dev "$POD_BRIDGE"
ip link set "$POD_BRIDGE" up
guard_install
guard_check || die "the egress guard is not in place"
log "egress guard installed and checked: pod and Service addresses cannot be routed off the machine"

# ---------------------------------------------------------------- certificates, etcd, control plane
NODE=$NODE_NAME NODE_IP=$NODE_IP bash "$here/mkpki.sh" "$KS/pki" >/dev/null
P=$KS/pki
# Pod Security "restricted" for every namespace but kube-system: no privileged or hostNetwork pod
# (whose traffic would be the host's, outside the egress guard), and the project's pods are held to
# the strictest profile (non-root, no capabilities, seccomp, no privilege escalation).
cat >"$KS/etc/admission.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: PodSecurity
    configuration:
      apiVersion: pod-security.admission.config.k8s.io/v1
      kind: PodSecurityConfiguration
      defaults: {enforce: restricted, enforce-version: latest, warn: restricted, warn-version: latest}
      exemptions: {usernames: [], runtimeClasses: [], namespaces: [kube-system]}
YAML
start etcd "$KB/root/usr/bin/etcd" --name cpu-pipeline --data-dir "$KS/data/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "cpu-pipeline=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "http://127.0.0.1:$ETCD_METRICS_PORT"
start kube-apiserver "$KB/bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 --service-cluster-ip-range="$SVC_CIDR" \
  --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local --authorization-mode=Node,RBAC \
  --allow-privileged=false --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$P/apiserver-kubelet-client.key" --kubelet-preferred-address-types=InternalIP --profiling=false \
  --admission-control-config-file="$KS/etc/admission.yaml"
waitfor "kube-apiserver ready" 120 kctl get --raw /readyz
start kube-controller-manager "$KB/bin/kube-controller-manager" --kubeconfig="$P/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$P/controller-manager.kubeconfig" --authorization-kubeconfig="$P/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" --use-service-account-credentials=true \
  --allocate-node-cidrs=true --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 --service-cluster-ip-range="$SVC_CIDR" \
  --leader-elect=false --profiling=false
start kube-scheduler "$KB/bin/kube-scheduler" --kubeconfig="$P/scheduler.kubeconfig" \
  --authentication-kubeconfig="$P/scheduler.kubeconfig" --authorization-kubeconfig="$P/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false

# ---------------------------------------------------------------- containerd and CNI
cat >"$KS/etc/containerd.toml" <<TOML
version = 2
root = "$KS/data/containerd"
state = "$KS/run/containerd"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE in this sandbox: runc cannot set a negative oom_score_adj (pause wants -998).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$KB/root/usr/lib/cni"
    conf_dir = "$KS/cni"
TOML
# bridge without ipMasq (nothing is translated to the host's address), firewall (Docker's FORWARD
# policy may be DROP), portmap.
cat >"$KS/cni/10-cpu-pipeline.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "cpu-pipeline", "plugins": [
  {"type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$KS/data/cni-ipam"}},
  {"type": "firewall", "backend": "iptables"},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
# No registry is reachable: any image pull goes to a proxy on 127.0.0.1 that refuses, and fails at once.
start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
  containerd --config "$KS/etc/containerd.toml"
waitfor "containerd answers" 30 ctr -a "$CTR_SOCK" version
env_of_containerd=$(tr '\0' '\n' <"/proc/$(cat "$KS/run/containerd.pid")/environ")
grep -qx 'HTTPS_PROXY=http://127.0.0.1:9' <<<"$env_of_containerd" && grep -qx 'HTTP_PROXY=http://127.0.0.1:9' <<<"$env_of_containerd" &&
  grep -qx 'NO_PROXY=' <<<"$env_of_containerd" || die "containerd does not run with the refusing pull proxy"
log "containerd runs with pulls refused (HTTP(S)_PROXY=http://127.0.0.1:9)"
for img in "$KB/images/pause.tar" "$KB/images/coredns.tar"; do ctrk images import "$img" >/dev/null; done
log "system images imported: $PAUSE_IMAGE, $COREDNS_IMAGE"

# ---------------------------------------------------------------- kubelet, kube-proxy
cat >"$KS/etc/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $P/ca.crt}}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CTR_SOCK
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
podLogsDir: $KS/data/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "5%", imagefs.available: "5%", nodefs.inodesFree: "2%"}
serializeImagePulls: false
YAML
start kubelet "$KB/bin/kubelet" --config="$KS/etc/kubelet.yaml" --kubeconfig="$P/kubelet.kubeconfig" \
  --root-dir="$KS/data/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
cat >"$KS/etc/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $P/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
start kube-proxy "$KB/bin/kube-proxy" --config="$KS/etc/kube-proxy.yaml"
waitfor "node $NODE_NAME Ready" 120 kctl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s

# ---------------------------------------------------------------- no pod on the host's namespaces
# Before any workload: the admission policy that keeps pods off the host's network whatever a
# namespace's Pod Security labels say (host-namespaces-policy.yaml), and proof that it refuses one.
# The probe asks in a namespace that Pod Security lets through, as the pipeline's does.
kctl apply -f "$here/host-namespaces-policy.yaml" >/dev/null
kctl create namespace cpu-pipeline-guard-probe >/dev/null
kctl label namespace cpu-pipeline-guard-probe pod-security.kubernetes.io/enforce=privileged >/dev/null
host_network_refused() { # (the request fails: no pipe into grep, whose match pipefail would hide)
  grep -q "cpu-pipeline-no-host-namespaces" < <(kctl -n cpu-pipeline-guard-probe run guard-probe --image=none \
    --restart=Never --dry-run=server --overrides='{"apiVersion":"v1","spec":{"hostNetwork":true}}' 2>&1)
}
waitfor "the admission policy refuses a pod on the host's network" 60 host_network_refused
kctl delete namespace cpu-pipeline-guard-probe --wait=false >/dev/null

# ---------------------------------------------------------------- CoreDNS, then the guard once more
sed "s#registry.k8s.io/coredns/coredns:v[0-9.]*#$COREDNS_IMAGE#; s#10.96.0.10#$DNS_IP#" "$here/coredns.yaml" | kctl apply -f - >/dev/null
waitfor "CoreDNS available" 180 kctl -n kube-system wait --for=condition=Available deploy/coredns --timeout=2s
guard_check || die "the egress guard is no longer in place after kube-proxy and CNI added their rules"
log "egress guard checked again with kube-proxy and the CNI plugins running"
touch "$KS/up.complete"
log "cluster up in $((SECONDS - t0)) s: $("$KB/bin/kubectl" version --kubeconfig "$KUBECONFIG_ADMIN" 2>/dev/null | tail -n 1)"
log "export KUBECONFIG=$KUBECONFIG_ADMIN"
