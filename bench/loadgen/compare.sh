#!/usr/bin/env bash
# Side-by-side: Postfix's smtp-source -> smtp-sink against postern-loadgen send -> sink on this
# box, interleaved, REPS repetitions each, for a new connection per message and for connection
# reuse. Prints one line per run and a markdown table of medians: messages/s of the sender
# (messages / sender wall time) and CPU seconds (user + system) of the sender and of the sink.
#
# Usage: bench/loadgen/compare.sh [REPS]   (env: MESSAGES=20000 SIZE=4096 SESSIONS=50 THREADS=1)
# Needs: /usr/sbin/smtp-source and smtp-sink (Debian: apt-get install postfix), /usr/bin/time,
# and a release build (cargo build --release -p postern-loadgen).
set -euo pipefail

REPS=${1:-3}
MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-4096}
SESSIONS=${SESSIONS:-50}
THREADS=${THREADS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=${LOADGEN:-$ROOT/target/release/postern-loadgen}
PF_PORT=${PF_PORT:-2611}
LG_PORT=${LG_PORT:-2612}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for tool in /usr/sbin/smtp-source /usr/sbin/smtp-sink /usr/bin/time "$LOADGEN"; do
    [ -x "$tool" ] || { echo "missing $tool (see the header of this script)" >&2; exit 2; }
done
# smtp-sink refuses to run as root without a user to drop to.
SINK_USER=()
[ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)

now() { date +%s%N; }

# run_one TOOL MODE: prints "TOOL MODE rate send_cpu sink_cpu"
run_one() {
    local tool=$1 mode=$2 sink_pid start end
    if [ "$tool" = postfix ]; then
        /usr/sbin/smtp-sink "${SINK_USER[@]}" -m 1024 "127.0.0.1:$PF_PORT" 1024 >/dev/null &
        sink_pid=$!
        local reuse=()
        [ "$mode" = reuse ] && reuse=(-d)
        sleep 0.5
        start=$(now)
        /usr/bin/time -f "%U %S" -o "$WORK/send.cpu" \
            /usr/sbin/smtp-source "${reuse[@]}" -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
            "127.0.0.1:$PF_PORT"
        end=$(now)
    else
        "$LOADGEN" sink --threads "$THREADS" --listen "127.0.0.1:$LG_PORT" >/dev/null &
        sink_pid=$!
        local per=0
        [ "$mode" = new ] && per=1
        sleep 0.5
        start=$(now)
        /usr/bin/time -f "%U %S" -o "$WORK/send.cpu" \
            "$LOADGEN" send --quiet --threads "$THREADS" --to "127.0.0.1:$LG_PORT" \
            --messages "$MESSAGES" --concurrency "$SESSIONS" --size "$SIZE" \
            --per-connection "$per" --json "$WORK/send.json" >/dev/null
        end=$(now)
        grep -q "\"accepted\": $MESSAGES," "$WORK/send.json" \
            || { echo "loadgen did not get all $MESSAGES accepted" >&2; exit 1; }
    fi
    # The sink is idle once the sender is done, so its CPU time read now is the run's.
    # /proc/PID/stat fields 14 and 15: user and system time of all its threads, in ticks.
    local send_cpu sink_cpu
    sink_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$sink_pid/stat")
    kill -TERM "$sink_pid"
    wait "$sink_pid" 2>/dev/null || true
    send_cpu=$(awk 'END { print $1 + $2 }' "$WORK/send.cpu")
    awk -v t="$tool" -v m="$mode" -v n="$MESSAGES" -v s="$start" -v e="$end" \
        -v a="$send_cpu" -v b="$sink_cpu" \
        'BEGIN { printf "%s %s %.0f %.2f %.2f\n", t, m, n / ((e - s) / 1e9), a, b }'
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $MESSAGES x $SIZE B, $SESSIONS sessions," \
     "loadgen threads $THREADS, $REPS reps" >&2
: > "$WORK/runs"
for rep in $(seq "$REPS"); do
    for mode in new reuse; do
        for tool in postfix loadgen; do
            line=$(run_one "$tool" "$mode")
            echo "run $rep: $line" >&2
            echo "$line" >> "$WORK/runs"
        done
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "| sender -> sink | connections | messages/s | sender CPU s | sink CPU s | CPU ms / 1000 msgs (both) |"
echo "|---|---|---:|---:|---:|---:|"
for mode in new reuse; do
    for tool in postfix loadgen; do
        rate=$(awk -v t="$tool" -v m="$mode" '$1 == t && $2 == m { print $3 }' "$WORK/runs" | median)
        send=$(awk -v t="$tool" -v m="$mode" '$1 == t && $2 == m { print $4 }' "$WORK/runs" | median)
        sink=$(awk -v t="$tool" -v m="$mode" '$1 == t && $2 == m { print $5 }' "$WORK/runs" | median)
        name="smtp-source -> smtp-sink"
        [ "$tool" = loadgen ] && name="postern-loadgen send -> sink"
        label="new per message"
        [ "$mode" = reuse ] && label="reused"
        awk -v n="$name" -v l="$label" -v r="$rate" -v a="$send" -v b="$sink" -v m="$MESSAGES" \
            'BEGIN { printf "| %s | %s | %d | %.2f | %.2f | %.0f |\n", n, l, r, a, b, (a + b) * 1e6 / m }'
    done
done
