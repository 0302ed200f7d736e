#!/usr/bin/env bash
# Start the cluster: `ray up` on a cloud, or the same shape on this machine with Ray's fake multi-node provider.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${FEWER_FRAMES_LOCAL_CLUSTER:-/tmp/fewer-frames-local}"
GCS_PORT="${FEWER_FRAMES_GCS_PORT:-6390}"
DASHBOARD_PORT="${FEWER_FRAMES_DASHBOARD_PORT:-8265}"

usage() {
    cat <<USAGE
usage: cluster/up.sh [CONFIG]     start an autoscaling cluster with 'ray up' (default: cluster/aws-gpu.yaml)
       cluster/up.sh --local      start the same shape on this machine: a head (1 CPU) and autoscaled
                                  worker types gpu-student and gpu-teacher carrying fake GPUs (cluster/local.yaml);
                                  dashboard and job submission on http://127.0.0.1:$DASHBOARD_PORT
       cluster/up.sh --help

Run from the repository root (the cloud config copies '.' to the nodes). Credentials come from your AWS
configuration (environment, ~/.aws, AWS_PROFILE); no file here holds any.
--local keeps its state in \$FEWER_FRAMES_LOCAL_CLUSTER (default /tmp/fewer-frames-local) and listens on
\$FEWER_FRAMES_GCS_PORT (6390) and \$FEWER_FRAMES_DASHBOARD_PORT (8265); 'cluster/down.sh --local' stops it.
USAGE
}

up_local() {
    if [[ -f "$STATE/pgid" ]] && kill -0 -- "-$(cat "$STATE/pgid")" 2>/dev/null; then
        echo "error: a local cluster is already running (process group $(cat "$STATE/pgid")); cluster/down.sh --local stops it" >&2
        exit 2
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE"
    local head
    head="$(python -c 'from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID as h; print(h)')"
    sed -e "s/@GCS_PORT@/$GCS_PORT/" -e "s/@HEAD_NODE_ID@/$head/" "$HERE/local.yaml" > "$STATE/autoscaler.yaml"
    # A session of its own: every process of this cluster, the worker nodes the autoscaler adds later
    # included, is in one process group, which down.sh --local stops and nothing else.
    # Token authentication off: everything listens on this machine only. The head's job agent on a port
    # of its own choosing (0), as Ray's fake nodes' are: on its default, 52365, another Ray on this machine
    # (a grid's local one) keeps it from binding, and every submission is refused ("No available agent").
    RAY_FAKE_CLUSTER=1 RAY_CLOUD_INSTANCE_ID="$head" RAY_OVERRIDE_NODE_ID_FOR_TESTING="$head" \
    AUTOSCALER_UPDATE_INTERVAL_S=1 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 \
    setsid --wait bash -c 'echo $$ > "$0/pgid"; exec ray start --head --port "$1" --num-cpus 1 --num-gpus 0 \
        --dashboard-host 127.0.0.1 --dashboard-port "$2" --dashboard-agent-listen-port 0 \
        --autoscaling-config "$0/autoscaler.yaml" \
        --temp-dir "$0/ray" --disable-usage-stats' "$STATE" "$GCS_PORT" "$DASHBOARD_PORT" > "$STATE/start.log" 2>&1 || {
        echo "error: ray start failed (log: $STATE/start.log):" >&2
        tail -n 5 "$STATE/start.log" >&2
        "$HERE/down.sh" --local > /dev/null 2>&1 || true
        exit 1
    }
    cat <<DONE
local cluster up: head with 1 CPU; gpu-student (1 fake GPU) and gpu-teacher (2 fake GPUs) nodes are added
while work asks for them and removed after 30 s idle. Dashboard: http://127.0.0.1:$DASHBOARD_PORT
submit:  ray job submit --address http://127.0.0.1:$DASHBOARD_PORT --working-dir . -- python -m orchestrator.grid --preset smoke
         (with more than one node the store must be shared: --store s3://... --tracking-uri ...; see the README)
status:  ray status --address 127.0.0.1:$GCS_PORT
stop:    cluster/down.sh --local
DONE
}

case "${1:-}" in
    -h|--help) usage ;;
    --local) up_local ;;
    -*) usage >&2; exit 2 ;;
    *)
        config="${1:-$HERE/aws-gpu.yaml}"
        [[ -f "$config" ]] || { echo "error: $config: no such cluster config" >&2; exit 2; }
        ray up --yes --disable-usage-stats "$config"
        cat <<DONE
cluster up. Dashboard and job submission through an SSH tunnel: ray dashboard $config   (then http://127.0.0.1:8265)
submit:  RAY_ADDRESS=http://127.0.0.1:8265 ray job submit --working-dir . -- python -m orchestrator.grid --preset paper \\
             --store s3://BUCKET/PREFIX --data s3://BUCKET/yt8m --tracking-uri http://127.0.0.1:5000
stop:    cluster/down.sh $config
DONE
        ;;
esac
