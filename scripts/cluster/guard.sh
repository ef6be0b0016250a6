# shellcheck shell=bash
# The egress guard (sourced by up.sh, down.sh and `scripts/cluster.sh guard`).
#
# Pod traffic must never leave this machine. Three independent parts, installed before the first
# pod and checked before any workload is applied:
#   1. policy routing: packets from pod addresses are looked up in a table of their own that knows
#      only the node's pod network and otherwise answers "unreachable" (local addresses still win:
#      the local table comes first), so a pod has nowhere to go but this machine;
#   2. mangle POSTROUTING DROP (a table no CNI plugin or kube-proxy reorders) of anything from the
#      pod network that is not leaving through the pod bridge, and of anything to Service
#      addresses leaving through the uplink (a Service with no ready endpoint is not rewritten);
#      ip6tables: pods have no IPv6 addresses here, and nothing from the pod bridge is routed out;
#   3. containerd runs with a proxy on 127.0.0.1:9, which refuses: a missing image fails at once.
# Pods on the host's network would be the host's traffic, outside all of this: the apiserver allows
# no privileged pods, Pod Security "restricted" (up.sh) admits no hostNetwork pod outside kube-system,
# and an admission policy (host-namespaces-policy.yaml, applied and tried by up.sh before any
# workload) refuses one there also in a namespace whose labels relax Pod Security.
# A chain in the raw table counts the packets pods addressed to somewhere off the machine (the
# route then refused them): not a part of the guard, the evidence of whether it was needed.

GUARD_CHAIN=CPU-PIPELINE-OFFHOST

guard_rules() { # one rule per line: TOOL TABLE CHAIN SPEC... (all tagged with $GUARD_TAG)
  local up; up=$(uplink)
  echo "iptables mangle POSTROUTING -s $POD_CIDR ! -o $POD_BRIDGE -j DROP"
  [ -z "$up" ] || echo "iptables mangle POSTROUTING -o $up -d $SVC_CIDR -j DROP"
  echo "iptables raw PREROUTING -i $POD_BRIDGE -j $GUARD_CHAIN"
  echo "ip6tables filter FORWARD -i $POD_BRIDGE ! -o $POD_BRIDGE -j DROP"
}

guard_install() {
  local tool table chain spec
  ip route replace "$NODE_POD_CIDR" dev "$POD_BRIDGE" table "$GUARD_TABLE"
  ip route replace unreachable default table "$GUARD_TABLE"
  grep -q "lookup $GUARD_TABLE" < <(ip rule show) || ip rule add from "$POD_CIDR" lookup "$GUARD_TABLE" priority "$GUARD_TABLE"
  iptables -t raw -N "$GUARD_CHAIN" 2>/dev/null || iptables -t raw -F "$GUARD_CHAIN"
  iptables -t raw -A "$GUARD_CHAIN" -d "$POD_CIDR" -j RETURN
  iptables -t raw -A "$GUARD_CHAIN" -d "$SVC_CIDR" -j RETURN
  iptables -t raw -A "$GUARD_CHAIN" -m addrtype --dst-type LOCAL -j RETURN
  iptables -t raw -A "$GUARD_CHAIN" -m comment --comment "$GUARD_TAG-offhost"
  while read -r tool table chain spec; do
    # shellcheck disable=SC2086 # spec is a list of iptables arguments
    $tool -t "$table" -C "$chain" $spec -m comment --comment "$GUARD_TAG" 2>/dev/null ||
      $tool -t "$table" -I "$chain" 1 $spec -m comment --comment "$GUARD_TAG"
  done < <(guard_rules)
}

guard_remove() {
  local tool table chain spec
  while read -r tool table chain spec; do
    # shellcheck disable=SC2086
    while $tool -t "$table" -D "$chain" $spec -m comment --comment "$GUARD_TAG" 2>/dev/null; do :; done
  done < <(guard_rules)
  # rules of an uplink that has changed since up: by their tag
  for tool in iptables ip6tables; do
    for table in mangle raw filter; do
      $tool -t "$table" -S 2>/dev/null | grep -F -- "--comment $GUARD_TAG" | sed 's/^-A/-D/' | while read -r rule; do
        eval "$tool -t $table $rule" 2>/dev/null || true
      done
    done
  done
  iptables -t raw -F "$GUARD_CHAIN" 2>/dev/null && iptables -t raw -X "$GUARD_CHAIN" 2>/dev/null
  while ip rule del lookup "$GUARD_TABLE" 2>/dev/null; do :; done
  ip route flush table "$GUARD_TABLE" 2>/dev/null || true
}

# Fails (returns 1, with a line per problem) unless every part of the guard is in place and no pod
# or Service address can be routed off the machine.
guard_check() {
  local ok=0 tool table chain spec probe r
  while read -r tool table chain spec; do
    # shellcheck disable=SC2086
    $tool -t "$table" -C "$chain" $spec -m comment --comment "$GUARD_TAG" 2>/dev/null ||
      { echo "guard: missing: $tool -t $table $chain $spec" >&2; ok=1; }
  done < <(guard_rules)
  iptables -t raw -C "$GUARD_CHAIN" -m comment --comment "$GUARD_TAG-offhost" 2>/dev/null ||
    { echo "guard: the counting chain $GUARD_CHAIN is missing" >&2; ok=1; }
  # the DROP rules must come before anything else in mangle POSTROUTING
  if [ "$(iptables -t mangle -S POSTROUTING | sed -n 2p | grep -c -- "$GUARD_TAG")" != 1 ]; then
    echo "guard: the first rule of mangle POSTROUTING is not the guard's" >&2; ok=1
  fi
  grep -q "from $POD_CIDR lookup $GUARD_TABLE" < <(ip rule show) || { echo "guard: no policy rule for $POD_CIDR" >&2; ok=1; }
  # a pod address sending anywhere off the machine (a public address, the uplink's gateway, a
  # Service address that was not rewritten) must get "unreachable"
  local gw; gw=$(ip -4 route show default | awk 'NR == 1 { print $3 }')
  for probe in 1.1.1.1 192.0.2.1 ${gw:+$gw} 10.96.123.45; do
    r=$(ip -4 route get "$probe" from "${NODE_POD_CIDR%.0/24}.200" iif "$POD_BRIDGE" 2>&1 || true)
    case $r in
      *nreachable*|*"No route"*|*"Invalid argument"*) ;;
      *) echo "guard: a pod could reach $probe: $r" >&2; ok=1 ;;
    esac
  done
  return $ok
}

guard_counters() { # the guard's counters, one line per rule
  local tool table line re='^\[([0-9]+):([0-9]+)\] -A ([A-Za-z0-9_-]+)(.*) -m comment --comment "?[A-Za-z0-9-]+"?(.*)$'
  for tool in iptables ip6tables; do
    for table in raw mangle filter; do
      while read -r line; do
        [[ $line =~ $re ]] || continue
        printf 'guard: %-9s %-6s %-20s packets=%-5s bytes=%-7s %s%s\n' "$tool" "$table" "${BASH_REMATCH[3]}" \
          "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[4]# }" "${BASH_REMATCH[5]:-to addresses off the machine (counted; the route refuses them)}"
      done < <("$tool-save" -c -t "$table" 2>/dev/null | grep -F -- "$GUARD_TAG")
    done
  done
}
