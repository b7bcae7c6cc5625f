# Two network namespaces joined by a veth pair, for the benchmarks' --veth mode: a
# peer that is not loopback, the path real clients and containers take. Source it:
#
#   veth_up NAME [NET16]  (root) makes the namespaces NAMEs (the server's side) and
#                         NAMEc (the client's side) and one /30 of NET16.0.0/16 chosen
#                         by the script's pid (NET16: 198.18, the default, or 198.19,
#                         both inside 198.18.0.0/15; scripts that may run side by side
#                         use different ones). Sets addr (server), cli_addr, ns_srv,
#                         ns_cli and the command prefixes in_srv and in_cli. Without
#                         root it prints "skipped: --veth needs root" and exits 0.
#   veth_down             removes both namespaces (and so the pair); does nothing when
#                         veth_up never ran. Call it from the script's EXIT trap.

veth_up() {
  [ "$(id -u)" = 0 ] || { echo "skipped: --veth needs root" >&2; exit 0; }
  local net=$(( $$ % 16384 * 4 )) net16=${2:-198.18} ns
  ns_srv=${1}s
  ns_cli=${1}c
  addr=$net16.$((net / 256)).$((net % 256 + 1))
  cli_addr=$net16.$((net / 256)).$((net % 256 + 2))
  veth_made=1
  ip netns add "$ns_srv"
  ip netns add "$ns_cli"
  ip link add veth0 netns "$ns_srv" type veth peer name veth1 netns "$ns_cli"
  ip -n "$ns_srv" addr add "$addr/30" dev veth0
  ip -n "$ns_cli" addr add "$cli_addr/30" dev veth1
  for ns in "$ns_srv" "$ns_cli"; do ip -n "$ns" link set lo up; done
  ip -n "$ns_srv" link set veth0 up
  ip -n "$ns_cli" link set veth1 up
  in_srv=(ip netns exec "$ns_srv")
  in_cli=(ip netns exec "$ns_cli")
}

veth_down() {
  [ -n "${veth_made:-}" ] || return 0
  sleep 0.2 # servers just killed leave their namespace
  ip netns del "$ns_srv" 2>/dev/null || true
  ip netns del "$ns_cli" 2>/dev/null || true
  veth_made=
}
