#!/usr/bin/env bash
# The TLS profile as testssl.sh (a scanner we did not write) sees it, on a STARTTLS listener and
# an implicit-TLS listener of a real postern: SSLv2, SSLv3, TLS 1.0 and 1.1 not offered, TLS 1.2
# and 1.3 offered, no NULL/anonymous/export/low/3DES/CBC suite, and every suite offered uses an
# ephemeral (EC)DH key exchange. An RSA certificate, so the ECDHE-RSA suites are exercised.
#
# Usage: tests/interop/tls.sh [path/to/postern]   (default: target/debug/postern)
# Needs: testssl.sh, openssl, python3 (installed by .ci/run).
set -euo pipefail

. "$(dirname "$0")/common.sh"
starttls_port=$(free_port)
implicit_port=$(free_port)

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.interop.test \
    -addext subjectAltName=DNS:relay.interop.test \
    -keyout "$work/key.pem" -out "$work/certificate.pem" 2>/dev/null

cat >"$work/postern.toml" <<TOML
[server]
hostname = "relay.interop.test"
spool = "$work/spool"
shards = 1

[[listener]]
address = "127.0.0.1:$starttls_port"
tls = "starttls"

[[listener]]
address = "127.0.0.1:$implicit_port"
tls = "implicit"

[tls]
certificate = "$work/certificate.pem"
private_key = "$work/key.pem"

[[route]]
domains = ["*"]
smarthost = "127.0.0.1:9"
TOML

start_postern

scan() { # name, testssl arguments...
    local name=$1
    shift
    testssl --quiet --color 0 --warnings off --protocols --std --fs --each-cipher \
        --jsonfile "$work/$name.json" "$@" >"$work/$name.out" 2>&1 || true
    if python3 "$here/testssl_verdict.py" "$work/$name.json"; then
        echo "interop: testssl-$name: ok"
    else
        echo "interop: testssl-$name: FAILED"
        sed 's/^/    /' "$work/$name.out"
        return 1
    fi
}

failures=0
scan starttls --starttls smtp "127.0.0.1:$starttls_port" || failures=$((failures + 1))
scan implicit "127.0.0.1:$implicit_port" || failures=$((failures + 1))

if [ "$failures" -ne 0 ]; then
    echo "interop: $failures TLS check(s) failed; relay log:"
    sed 's/^/    /' "$work/postern.log" | tail -40
    exit 1
fi
echo "interop: TLS checks passed"
