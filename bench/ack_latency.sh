#!/usr/bin/env bash
# Spool syncs per message and ack latency against offered load (open loop), for postern alone:
# postern-loadgen send at fixed rates → postern → postern-loadgen sink. For each rate it prints
# accepted/s, the p50/p99 of the reply after end of data (coordinated-omission corrected), the
# spool syncs per accepted message from /metrics, and the p99s of the relay's own commit-wait
# and batch-write histograms. A final closed-loop run gives the peak.
#
# Usage: bench/ack_latency.sh [SECONDS_PER_RATE] [RATES...]   (default 10 s; 500 1000 2000 3000)
# The spool lives under POSTERN_LATENCY_DIR (default /var/tmp). Pointing it at a tmpfs, where a
# sync costs nothing, gives the latency of the same path without the disk, for comparison.
# POSTERN_LATENCY_ISOLATE=1 gives the relay the first core to itself (one shard, pinned there)
# and pins the load generator's sender and sink to the last core, as on a relay whose load
# comes from other machines; POSTERN_LATENCY_NEXT_HOP=down points the route at a closed port, so
# nothing is delivered during the run and the relay only receives.
set -euo pipefail

seconds=${1:-10}
shift || true
rates=("$@")
[ "${#rates[@]}" -gt 0 ] || rates=(500 1000 2000 3000)
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && cargo build --release --quiet --workspace)
postern=$root/target/release/postern
loadgen=$root/target/release/postern-loadgen
work=$(mktemp -d "${POSTERN_LATENCY_DIR:-/var/tmp}/postern-latency-XXXXXX")
trap 'kill "$relay" "$sink" 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); admin=$(free_port); sink_port=$(free_port)

shards=0
tool_cpus=()
if [ "${POSTERN_LATENCY_ISOLATE:-0}" = 1 ]; then
    shards=1
    tool_cpus=(--threads 1 --cpus "$(( $(nproc) - 1 ))")
fi
next_hop=$sink_port
[ "${POSTERN_LATENCY_NEXT_HOP:-up}" = down ] && next_hop=$(free_port)

"$loadgen" sink --listen "127.0.0.1:$sink_port" --threads 1 "${tool_cpus[@]}" >/dev/null 2>&1 &
sink=$!
cat >"$work/postern.toml" <<TOML
[server]
hostname = "latency.test"
spool = "$work/spool"
shards = $shards

[[listener]]
address = "127.0.0.1:$port"

[relay]
allow_networks = ["127.0.0.0/8"]

[[route]]
domains = ["*"]
smarthost = "127.0.0.1:$next_hop"
tls = "none"

[admin]
address = "127.0.0.1:$admin"

[log]
level = "warn"
TOML
"$postern" serve --config "$work/postern.toml" 2>"$work/postern.log" &
relay=$!
sleep 1

scrape() { curl -s "http://127.0.0.1:$admin/metrics"; }

# Columns: the load generator's view of the ack (p50, p99), spool syncs per accepted message, and
# the relay's own view from its histograms (the spool's share of the wait, and each batch), as
# p99s interpolated within the histogram buckets over the run.
printf '%-10s %12s %10s %10s %14s %14s %14s\n' "offered/s" "accepted/s" "p50 ms" "p99 ms" \
    "syncs/message" "wait p99 ms" "batch p99 ms"
run() { # label, extra send flags...
    local label=$1
    shift
    scrape >"$work/before.txt"
    "$loadgen" send --quiet "${tool_cpus[@]}" --to "127.0.0.1:$port" --concurrency 50 --size 4k \
        --duration "${seconds}s" --messages 100000000 --json "$work/run.json" "$@" >/dev/null
    scrape >"$work/after.txt"
    python3 - "$work/run.json" "$label" "$work/before.txt" "$work/after.txt" <<'PY'
import collections, json, re, sys

report = json.load(open(sys.argv[1]))
label = sys.argv[2]
SAMPLE = re.compile(r'^(postern_[a-z_]+)\{shard="\d+"(?:,le="([^"]+)")?\} (\S+)$')


def sums(path):
    """Each series summed over shards, keyed by (name, le)."""
    totals = collections.Counter()
    for line in open(path):
        match = SAMPLE.match(line.strip())
        if match:
            totals[(match[1], match[2])] += float(match[3])
    return totals


before, after = sums(sys.argv[3]), sums(sys.argv[4])
delta = {key: after[key] - before[key] for key in after}


def p99_ms(family):
    buckets = sorted(
        (float("inf") if le == "+Inf" else float(le), count)
        for (name, le), count in delta.items()
        if name == f"{family}_bucket"
    )
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return float("nan")
    wanted = 0.99 * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= wanted:
            if bound == float("inf"):
                return lower_bound * 1000
            share = (wanted - lower_count) / max(count - lower_count, 1)
            return (lower_bound + (bound - lower_bound) * share) * 1000
        lower_bound, lower_count = bound, count
    return float("nan")


syncs = delta.get(("postern_spool_syncs_total", None), 0)
messages = delta.get(("postern_messages_accepted_total", None), 0)
reply = report["latency_data_reply"]
print(f"{label:<10} {report['messages_per_second']:12.0f} {reply['p50_us'] / 1000:10.2f} "
      f"{reply['p99_us'] / 1000:10.2f} {syncs / max(messages, 1):14.3f} "
      f"{p99_ms('postern_spool_commit_wait_seconds'):14.2f} "
      f"{p99_ms('postern_spool_batch_write_seconds'):14.2f}")
PY
}
for rate in "${rates[@]}"; do
    run "$rate" --rate "$rate"
done
run "closed"
