# Sourced by the interoperability scripts: finds or builds the relay, makes a work directory
# removed on exit (stopping the relay if it still runs), and starts the relay on a config.
# Expects `$1` (optional path to postern) and sets `here`, `root`, `postern`, `work`.

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
postern=${1:-$root/target/debug/postern}
[ -x "$postern" ] || (cd "$root" && cargo build --quiet --bin postern)

work=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# A loopback port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts postern on $work/postern.toml, logging to $work/postern.log, and waits until it is
# ready (10 s at most); sets `pid`.
start_postern() {
    "$postern" serve --config "$work/postern.toml" 2>"$work/postern.log" &
    pid=$!
    for _ in $(seq 100); do
        grep -q "postern ready" "$work/postern.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q "postern ready" "$work/postern.log" || { cat "$work/postern.log"; exit 1; }
}
