#!/usr/bin/env bash
# A simulated cluster on one machine (root only): each "host" is a Linux network namespace
# with its own TCP stack and hostname, joined to a bridge by a veth pair whose both ends are
# shaped with tbf (this kernel has no netem). mpirun starts one orted per namespace through
# launch/netbed/ns-agent (set as plm_rsh_agent), so ranks talk over TCP exactly as on separate
# hosts.
#
#   bash launch/netbed/netbed.sh up HOSTS RATE     # e.g. up 2 100mbit (hosts 10.77.0.1..N)
#   bash launch/netbed/netbed.sh run HOSTS -- ARGS # mpirun -n HOSTS (one rank per host) ARGS
#   bash launch/netbed/netbed.sh down HOSTS
#
# `run` sets btl tcp,self and the test subnet for btl/oob, the runtime's TCP keepalive of
# cluster-configs/cluster.env (a host whose link goes down ends the job in seconds instead of
# hanging mpirun), OPENBLAS_NUM_THREADS=1, and runs mpirun itself inside the first namespace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: netbed.sh up|run|down HOSTS ...}
hosts=${2:?number of hosts}
shift 2
if ! [[ $hosts =~ ^[0-9]+$ ]] || [ "$hosts" -lt 1 ] || [ "$hosts" -gt 16 ]; then
    echo "netbed: HOSTS must be 1..16 (got $hosts)" >&2
    exit 2
fi
br=csgdbr0
case $cmd in
up)
    rate=${1:-100mbit}
    ip link add $br type bridge 2>/dev/null || true
    ip link set $br up
    for h in $(seq 1 "$hosts"); do
        ns=csgd-h$h
        ip netns add $ns
        ip link add csgd-v$h type veth peer name csgd-p$h
        ip link set csgd-v$h netns $ns
        ip link set csgd-p$h master $br up
        ip -n $ns addr add 10.77.0.$h/24 dev csgd-v$h
        ip -n $ns link set csgd-v$h up
        ip -n $ns link set lo up
        # Both directions: the namespace's egress on its end, the bridge's egress on the peer.
        tc -n $ns qdisc add dev csgd-v$h root tbf rate "$rate" burst 64kb latency 100ms
        tc qdisc add dev csgd-p$h root tbf rate "$rate" burst 64kb latency 100ms
    done
    ;;
run)
    [ "${1:-}" = "--" ] && shift
    hostfile=$(mktemp /tmp/csgd-netbed-hosts.XXXXXX)
    for h in $(seq 1 "$hosts"); do echo "10.77.0.$h slots=1" >>"$hostfile"; done
    rc=0
    OPENBLAS_NUM_THREADS=1 ip netns exec csgd-h1 mpirun --allow-run-as-root -n "$hosts" \
        --hostfile "$hostfile" --mca plm_rsh_agent "$here/ns-agent" \
        --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
        --mca oob_tcp_if_include 10.77.0.0/24 --mca oob_tcp_keepalive_time 5 \
        --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3 \
        -x OPENBLAS_NUM_THREADS "$@" || rc=$?
    rm -f "$hostfile"
    exit $rc
    ;;
down)
    for h in $(seq 1 "$hosts"); do
        ip netns pids csgd-h$h 2>/dev/null | xargs -r kill -9 || true
        ip netns del csgd-h$h 2>/dev/null || true
        ip link del csgd-p$h 2>/dev/null || true
    done
    ip link del $br 2>/dev/null || true
    ;;
*)
    echo "netbed: unknown command '$cmd' (up, run, down)" >&2
    exit 2
    ;;
esac
