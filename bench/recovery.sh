#!/usr/bin/env bash
# Recovery time per GiB of spool: fills a spool with about SIZE_MIB of queued mail (100 KiB
# messages from smtp-source, to a relay whose next hop is down so nothing leaves), stops the
# relay, drops the page cache (so recovery reads from the disk, as after a reboot), starts it
# again and reports what the shards' `spool recovered` log lines say.
#
# Usage: bench/recovery.sh [SIZE_MIB]   (default 1024; needs root for the cache drop, and the
#                                        Debian package postfix for smtp-source)
set -euo pipefail

size_mib=${1:-1024}
root=$(cd "$(dirname "$0")/.." && pwd)
postern=$root/target/release/postern
[ -x "$postern" ] || (cd "$root" && cargo build --release --bin postern)
work=$(mktemp -d /var/tmp/postern-recovery-XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/postern.toml" <<TOML
[server]
hostname = "recovery.test"
spool = "$work/spool"
shards = 0
spool_free_min = "0"

[[listener]]
address = "127.0.0.1:$port"

[relay]
allow_networks = ["127.0.0.0/8"]

# Nothing listens on port 9: every message stays queued.
[[route]]
domains = ["*"]
smarthost = "127.0.0.1:9"
tls = "none"

[delivery]
retry_schedule = ["1d"]

[log]
level = "info"
TOML

start() {
    "$postern" serve --config "$work/postern.toml" 2>"$work/postern.log" &
    pid=$!
    for _ in $(seq 600); do
        grep -q "postern ready" "$work/postern.log" && return
        sleep 0.1
    done
    echo "postern did not start:" >&2
    cat "$work/postern.log" >&2
    exit 1
}

start
messages=$((size_mib * 1024 / 100))
echo "filling the spool with $messages messages of 100 KiB..."
/usr/sbin/smtp-source -m "$messages" -s 20 -l 102400 -f fill@recovery.test -t r@example.com \
    "127.0.0.1:$port"
kill -TERM "$pid"
wait "$pid" || true
spool_bytes=$(du -sb "$work/spool" | cut -f1)

sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "(could not drop the page cache: reading warm)"
start
kill -TERM "$pid"
wait "$pid" || true

echo "spool on disk: $((spool_bytes / 1048576)) MiB"
grep "spool recovered" "$work/postern.log" | sed 's/.*spool recovered/spool recovered/'
