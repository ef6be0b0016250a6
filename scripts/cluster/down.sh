#!/usr/bin/env bash
# `scripts/cluster.sh down`: stops the cluster started by `up` and gives the host back as it was:
# processes, mounts, network namespaces, links, routes and rules, iptables chains and rules,
# cgroups, sysctls; then deletes the cluster's state (logs are kept). Touches only what `up` made,
# prints the egress guard's counters first, compares the host with its record from before `up`,
# and may be run any number of times (with nothing to do, it does nothing).
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=scripts/cluster/common.sh
source "$here/common.sh"
# shellcheck source=scripts/cluster/guard.sh
source "$here/guard.sh"
# shellcheck source=scripts/cluster/host.sh
source "$here/host.sh"

t0=$SECONDS
log() { printf '[cluster down +%ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "error: run as root"; exit 1; }
if [ ! -d "$KS" ] && ! ip link show "$POD_BRIDGE" >/dev/null 2>&1 && ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1 &&
   ! grep -q "lookup $GUARD_TABLE" < <(ip rule show); then
  log "nothing to do: no cluster state, links or guard on this host"
  exit 0
fi

guard_counters | sed 's/^/[cluster down] /' >&2

# A pid from run/NAME.pid, only if that process is still the program we started.
pid_of() {
  local f=$KS/run/$1.pid p
  [ -f "$f" ] || return 1
  p=$(cat "$f")
  [ -r "/proc/$p/cmdline" ] && grep -q -- "$2" < <(tr '\0' ' ' <"/proc/$p/cmdline") && echo "$p"
}
stop() { # stop NAME PATTERN: SIGTERM, then SIGKILL after 30 s
  local p i
  p=$(pid_of "$1" "$2") || { rm -f "$KS/run/$1.pid"; return 0; }
  kill -TERM "$p" 2>/dev/null
  for ((i = 0; i < 30; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
  kill -0 "$p" 2>/dev/null && { log "$1 did not stop in 30 s: SIGKILL"; kill -KILL "$p"; sleep 1; }
  rm -f "$KS/run/$1.pid"
  log "stopped $1 (pid $p)"
}

# 1. Drain: delete the workloads, so that kubelet stops every pod sandbox (CNI DEL gives back IPs,
#    iptables rules and network namespaces).
if pid_of kubelet "$KB/bin/kubelet" >/dev/null && kctl --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
  kctl --request-timeout=20s delete deploy,ds,sts,job,cronjob,rs,pod --all --all-namespaces --wait=false >/dev/null 2>&1
  for _ in $(seq 1 90); do [ -z "$(kctl --request-timeout=5s get pods -A -o name 2>/dev/null)" ] && break; sleep 1; done
  for _ in $(seq 1 60); do [ -z "$(ctrk tasks ls -q 2>/dev/null)" ] && break; sleep 1; done
  log "workloads deleted"
fi
stop kube-proxy "$KB/bin/kube-proxy"
stop kubelet "$KB/bin/kubelet"
# 2. Whatever is left in containerd, then containerd and the control plane.
if pid_of containerd "containerd --config $KS" >/dev/null; then
  for t in $(ctrk tasks ls -q 2>/dev/null); do ctrk tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $(ctrk tasks ls -q 2>/dev/null); do ctrk tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $(ctrk containers ls -q 2>/dev/null); do ctrk containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd "containerd --config $KS"
# containerd's shims outlive it; these are ours if their command line names our socket.
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTR_SOCK" || true); do
  kill -KILL "$p" 2>/dev/null && log "killed a leftover containerd shim (pid $p)"
done
stop kube-scheduler "$KB/bin/kube-scheduler"
stop kube-controller-manager "$KB/bin/kube-controller-manager"
stop kube-apiserver "$KB/bin/kube-apiserver"
stop etcd "$KB/root/usr/bin/etcd"

# 3. Mounts under the cluster's folders (deepest first), network namespaces made since up, links.
findmnt -rn -o TARGET | grep -E "^($KS|$cache/k8s)/" | sort -r | while read -r m; do
  umount "$m" 2>/dev/null || umount -l "$m"
done
before=$KS/host-before
if [ -f "$before/netns" ]; then
  for n in $(ip netns list | awk '{ print $1 }' | grep '^cni-' || true); do
    grep -qxF "$n" "$before/netns" || ip netns del "$n"
  done
fi
for l in $(ip -o link show master "$POD_BRIDGE" 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do ip link del "$l" 2>/dev/null; done
ip route del "$SVC_CIDR" dev "$NODE_BRIDGE" 2>/dev/null
ip link del "$POD_BRIDGE" 2>/dev/null
ip link del "$NODE_BRIDGE" 2>/dev/null

# 4. iptables: kube-proxy's, kubelet's, the CNI plugins', the guard's. Only rules and chains that
#    were not there before up, and only of those names.
"$KB/bin/kube-proxy" --cleanup >/dev/null 2>&1
guard_remove
for tool in iptables ip6tables; do
  for table in raw mangle nat filter; do
    saved=$("$tool-save" -t "$table" 2>/dev/null)
    was=$(grep -s -E "^-A " "$before/$tool" || true)
    # rules that jump to or live in KUBE-*/CNI-* chains and were not there before
    grep -E '^-A ' <<<"$saved" | grep -E -- '(-j|-A) (KUBE-|CNI-)|CNI firewall plugin|cpu-pipeline' | while read -r rule; do
      grep -qxF -- "$rule" <<<"$was" || eval "$tool -t $table ${rule/#-A/-D}" 2>/dev/null
    done
    for ch in $(grep -E '^:(KUBE-|CNI-)' <<<"$saved" | cut -d' ' -f1 | tr -d ':'); do
      grep -qE "^:$ch " "$before/$tool" 2>/dev/null && continue
      "$tool" -t "$table" -F "$ch" 2>/dev/null
    done
    for ch in $(grep -E '^:(KUBE-|CNI-)' <<<"$saved" | cut -d' ' -f1 | tr -d ':'); do
      grep -qE "^:$ch " "$before/$tool" 2>/dev/null && continue
      "$tool" -t "$table" -X "$ch" 2>/dev/null
    done
  done
done

[ -d "$before" ] && host_drop_new_empty_tables "$before"

# 5. cgroups made by kubelet (kubepods) and containerd (k8s.io), deepest first.
for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/*/kubepods.slice; do
  [ -d "$d" ] || continue
  grep -qxF "$d" "$before/cgroups" 2>/dev/null && continue
  find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 6. sysctls kubelet, kube-proxy and the CNI bridge plugin set, back to their values from before up.
if [ -s "$before/sysctls" ]; then
  while read -r key _ value; do
    [ "$(sysctl -n "$key" 2>/dev/null)" = "$value" ] || sysctl -q -w "$key=$value" >/dev/null
  done <"$before/sysctls"
fi

# 7. Compare with the record, then delete the state (never through a mount).
status=0
if [ -d "$before" ]; then
  if host_compare "$before" | sed 's/^/[cluster down] /' >&2; [ "${PIPESTATUS[0]}" = 0 ]; then
    log "host restored: iptables, ip rules and routes, links, netns, mounts, sysctls and cgroups are as before up"
  else
    log "warning: the host differs from before up (above)"
    status=1
  fi
fi
if grep -q -E "^$KS/" < <(findmnt -rn -o TARGET); then
  log "error: mounts remain under $KS; not deleting it"
  status=1
else
  rm -rf --one-file-system "$KS"
fi
left=$(for n in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do pgrep -f "^$KB/(bin|root/usr/bin)/$n( |$)"; done; pgrep -f "containerd --config $KS" || true)
[ -z "$left" ] || { log "error: processes left: $left"; status=1; }
log "down in $((SECONDS - t0)) s"
exit $status
