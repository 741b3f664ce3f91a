#!/usr/bin/env bash
# A three-master Redis Cluster on loopback for the tests (ports 7101-7103, no replicas, nothing
# kept on disk beyond the cluster's own node files under target/redis-cluster).
#   scripts/redis-cluster.sh start   # idempotent: does nothing when the cluster is already up
#   scripts/redis-cluster.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

PORTS=(7101 7102 7103)
DIR="$PWD/target/redis-cluster"

cluster_ok() {
    redis-cli -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

case "${1:-start}" in
start)
    if cluster_ok; then
        echo "redis cluster already up on ${PORTS[*]}"
        exit 0
    fi
    command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
    for port in "${PORTS[@]}"; do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
        rm -rf "$DIR/$port"
        mkdir -p "$DIR/$port"
        redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
            --cluster-enabled yes --cluster-config-file "$DIR/$port/nodes.conf" \
            --cluster-node-timeout 5000 --save "" --appendonly no \
            --dir "$DIR/$port" --logfile "$DIR/$port/redis.log"
    done
    for port in "${PORTS[@]}"; do
        for _ in $(seq 1 50); do
            redis-cli -p "$port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") \
        --cluster-replicas 0 --cluster-yes >/dev/null
    for _ in $(seq 1 100); do
        cluster_ok && { echo "redis cluster up on ${PORTS[*]}"; exit 0; }
        sleep 0.1
    done
    echo "redis cluster did not reach cluster_state:ok" >&2
    exit 1
    ;;
stop)
    for port in "${PORTS[@]}"; do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
