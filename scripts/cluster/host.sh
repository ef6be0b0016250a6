# shellcheck shell=bash
# What the cluster changes on the host, saved before `up` and compared after `down` (sourced).

HOST_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)

host_snapshot() { # host_snapshot DIR
  local d=$1 tool table
  mkdir -p "$d"
  # Without -t, iptables-save lists only the tables that exist (with nf_tables, a table is made on
  # first use and stays, empty, after its last rule is gone).
  for tool in iptables ip6tables; do
    # (no table at all is a normal state: then there is nothing to list)
    { "$tool-save" 2>/dev/null || true; } | { grep -v '^#' || true; } | sed -E 's/ \[[0-9]+:[0-9]+\]$//' | sort >"$d/$tool"
  done
  ip rule show >"$d/ip-rules"
  ip -4 route show table all | grep -v -E ' (proto kernel|table local) ' | sort >"$d/ip-routes" || true
  ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort >"$d/links"
  ip netns list | awk '{ print $1 }' | sort >"$d/netns"
  findmnt -rn -o TARGET | sort >"$d/mounts"
  sysctl -e "${HOST_SYSCTLS[@]}" 2>/dev/null | sort >"$d/sysctls"
  find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d 2>/dev/null | sort >"$d/cgroups"
}

host_compare() { # host_compare BEFORE_DIR: prints what differs; returns 1 if anything does
  local before=$1 now differ=0 f
  now=$(mktemp -d)
  host_snapshot "$now"
  for f in iptables ip6tables ip-rules ip-routes links netns mounts sysctls cgroups; do
    [ -f "$before/$f" ] || { echo "host: no record of $f from before up"; differ=1; continue; }
    if ! diff -q "$before/$f" "$now/$f" >/dev/null; then
      differ=1
      echo "host: $f differ from before up (< before, > now):"
      diff "$before/$f" "$now/$f" | grep '^[<>]' | sed -n 1,20p | sed 's/^/    /'
    fi
  done
  rm -rf "$now"
  return $differ
}

# With nf_tables, iptables leaves a table behind once it has used it, even when it is empty again.
# Deletes the tables that did not exist before up, if nothing is left in them (no rule, no chain of
# their own, every policy ACCEPT). Needs nft (Debian: nftables).
host_drop_new_empty_tables() { # host_drop_new_empty_tables BEFORE_DIR
  local before=$1 tool family table content
  command -v nft >/dev/null || return 0
  for tool in iptables ip6tables; do
    family=ip; [ "$tool" = ip6tables ] && family=ip6
    "$tool-save" 2>/dev/null | sed -n 's/^\*//p' | while read -r table; do
      grep -qxF "*$table" "$before/$tool" 2>/dev/null && continue
      content=$("$tool-save" -t "$table" | grep -v -E '^(#|\*|COMMIT$|:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT )')
      [ -z "$content" ] && nft delete table "$family" "$table"
    done
  done
}

