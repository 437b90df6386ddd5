#!/usr/bin/env bash
# Interoperability checks against SMTP clients we did not write: swaks (PIPELINING, a 1 MiB
# message, an 8-bit body) and Python's smtplib (an SMTPUTF8 address). Each client talks to a real
# postern on loopback; the script then exports the relay's spool and checks what arrived.
#
# Usage: tests/interop/run.sh [path/to/postern]   (default: target/debug/postern, built if absent)
# Needs: swaks, python3 (installed by .ci/run and `just interop`).
set -euo pipefail

. "$(dirname "$0")/common.sh"
port=$(free_port)

cat >"$work/postern.toml" <<TOML
[server]
hostname = "relay.interop.test"
spool = "$work/spool"
shards = 2

[[listener]]
address = "127.0.0.1:$port"

[relay]
allow_networks = ["127.0.0.0/8"]

# Nothing listens on port 9 of loopback: mail stays queued for the checks below, and no
# DNS question leaves the machine.
[[route]]
domains = ["*"]
smarthost = "127.0.0.1:9"
TOML

start_postern

failures=0
check() { # name, command...
    local name=$1
    shift
    if "$@" >"$work/$name.out" 2>&1; then
        echo "interop: $name: ok"
    else
        echo "interop: $name: FAILED"
        sed 's/^/    /' "$work/$name.out"
        failures=$((failures + 1))
    fi
}

check swaks-pipelining swaks --server "127.0.0.1:$port" --pipeline \
    --from sender@interop.test --to pipelined@example.com \
    --header "Subject: swaks pipelining" --body "pipelined through postern"

python3 -c 'import sys; line = "x" * 76 + "\r\n"; sys.stdout.write(line * (1048576 // len(line) + 1))' \
    >"$work/large.txt"
check swaks-1mib swaks --server "127.0.0.1:$port" --pipeline \
    --from sender@interop.test --to large@example.com \
    --header "Subject: swaks 1 MiB" --body "@$work/large.txt"

printf 'Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln, \xe2\x82\xac 8-bit body\r\n' >"$work/8bit.txt"
check swaks-8bit swaks --server "127.0.0.1:$port" \
    --from sender@interop.test --to eightbit@example.com \
    --header "Subject: swaks 8-bit" --header "Content-Type: text/plain; charset=utf-8" \
    --header "Content-Transfer-Encoding: 8bit" --body "@$work/8bit.txt"

check smtplib-smtputf8 python3 "$here/smtputf8.py" "127.0.0.1" "$port"

# Stop the relay cleanly, then read back what its spool holds with the offline export tool.
kill -TERM "$pid" && wait "$pid" || true
pid=
check spool-export "$postern" spool export --spool "$work/spool" --output "$work/exported"
check stored-messages python3 "$here/verify_store.py" "$work/exported"

if [ "$failures" -ne 0 ]; then
    echo "interop: $failures check(s) failed; relay log:"
    sed 's/^/    /' "$work/postern.log" | tail -40
    exit 1
fi
echo "interop: all checks passed"
