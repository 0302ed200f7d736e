#!/usr/bin/env bash
# Stop the cluster that cluster/up.sh started: `ray down` on a cloud, or exactly the local processes.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${FEWER_FRAMES_LOCAL_CLUSTER:-/tmp/fewer-frames-local}"

usage() {
    cat <<USAGE
usage: cluster/down.sh [CONFIG]   tear down the cluster 'cluster/up.sh CONFIG' started ('ray down';
                                  default: cluster/aws-gpu.yaml); the store on S3 is left as it is
       cluster/down.sh --local    stop the local cluster 'cluster/up.sh --local' started: its process group
                                  (head, autoscaler, the worker nodes it added), nothing else
       cluster/down.sh --help
USAGE
}

alive() {  # processes of group $1 still running (exited ones waiting to be reaped do not count)
    ps -eo pgid=,stat= | awk -v group="$1" '$1 == group && $2 !~ /^Z/' | grep -q .
}

down_local() {
    if [[ ! -f "$STATE/pgid" ]]; then
        echo "no local cluster recorded in $STATE: nothing to stop"
        return 0
    fi
    local group
    group="$(cat "$STATE/pgid")"
    if kill -TERM -- "-$group" 2>/dev/null; then
        for _ in $(seq 1 20); do  # most exit at once; the GCS, raylets and the autoscaler may ignore SIGTERM
            alive "$group" || break
            sleep 0.5
        done
        if alive "$group"; then
            kill -KILL -- "-$group" 2>/dev/null || true
            for _ in $(seq 1 20); do alive "$group" || break; sleep 0.5; done
        fi
    fi
    rm -rf "$STATE"
    echo "local cluster stopped (process group $group)"
}

case "${1:-}" in
    -h|--help) usage ;;
    --local) down_local ;;
    -*) usage >&2; exit 2 ;;
    *)
        config="${1:-$HERE/aws-gpu.yaml}"
        [[ -f "$config" ]] || { echo "error: $config: no such cluster config" >&2; exit 2; }
        ray down --yes "$config"
        ;;
esac
