#!/usr/bin/env bash
# A private Exim 4 instance configured as a pure relay, for side-by-side benchmarks.
#
# Usage: bench/exim-instance.sh start DIR LISTEN_PORT NEXT_HOP_PORT
#        bench/exim-instance.sh stop DIR
#
# Debian's mail servers conflict as packages and Postfix is installed system-wide, so Exim is
# not installed: the Debian packages (exim4-daemon-light, exim4-base, exim4-config and libidn12,
# which the binary links against) are fetched with `apt-get download` and unpacked with
# `dpkg-deb -x` once into $EXIM_CACHE (default /var/tmp/postern-bench-exim), and the binary runs
# from there. Exim re-execs itself (exim_path below) through its setuid bit, where the loader
# ignores LD_LIBRARY_PATH, so the unpacked binary gets an absolute RUNPATH to the unpacked
# libidn12 instead, set with patchelf (also only downloaded and unpacked).
#
# The instance lives entirely under DIR (configuration, spool, logs), listens on
# 127.0.0.1:LISTEN_PORT, relays every recipient domain from 127.0.0.0/8 to
# 127.0.0.1:NEXT_HOP_PORT with a manualroute router, does no DNS lookups and no TLS, delivers
# each message at once (no queue_only, smtp_accept_queue_per_connection = 0), and keeps Exim's
# normal durability: the spool files are fsync'ed before `250`.
#
# What the Debian binary needs, found out here: it refuses to start at all (even -bV) unless
# its compiled-in exim user Debian-exim exists, so this script creates that system user if it
# is missing, as the package's postinst would. Run as root, `-C DIR/exim.conf` is accepted
# without a TRUSTED_CONFIG_LIST entry (Exim keeps its privilege for -C when the caller is root),
# provided the file is owned by root and not writable by others.
set -euo pipefail

command=${1:?start or stop}
directory=$(realpath -m "${2:?instance directory}")
cache=${EXIM_CACHE:-/var/tmp/postern-bench-exim}
exim=$cache/root/usr/sbin/exim4

case "$command" in
start)
    listen_port=${3:?listen port}
    next_hop_port=${4:?next hop port}
    if [ ! -e "$cache/unpacked" ]; then
        mkdir -p "$cache/root"
        (cd "$cache" \
            && apt-get download exim4-daemon-light exim4-base exim4-config libidn12 patchelf)
        for package in exim4-daemon-light exim4-base exim4-config libidn12; do
            dpkg-deb -x "$cache/$package"_*.deb "$cache/root"
        done
        dpkg-deb -x "$cache"/patchelf_*.deb "$cache/tools"
        "$cache/tools/usr/bin/patchelf" --set-rpath "$cache/root/usr/lib/x86_64-linux-gnu" "$exim"
        chmod 4755 "$exim"
        touch "$cache/unpacked"
    fi
    getent passwd Debian-exim >/dev/null \
        || useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin Debian-exim
    mkdir -p "$directory/spool" "$directory/log"
    chown Debian-exim:Debian-exim "$directory/spool" "$directory/log"
    cat >"$directory/exim.conf" <<CONF
primary_hostname = exim-bench.test
exim_user = Debian-exim
exim_group = Debian-exim
spool_directory = $directory/spool
log_file_path = $directory/log/%slog
pid_file_path = $directory/exim.pid
daemon_smtp_ports = $listen_port
local_interfaces = 127.0.0.1
disable_ipv6 = true
exim_path = $exim
keep_environment =
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
hostlist relay_from_hosts = 127.0.0.0/8
acl_smtp_rcpt = acl_check_rcpt
queue_only = false
smtp_accept_queue_per_connection = 0
smtp_accept_max = 200
smtp_accept_max_per_host = 0
smtp_accept_reserve = 0
smtp_connect_backlog = 128
remote_max_parallel = 20
message_size_limit = 50M

begin acl

acl_check_rcpt:
  accept  hosts = +relay_from_hosts
  deny    message = relay not permitted

begin routers

smarthost:
  driver = manualroute
  domains = *
  transport = remote_smtp
  route_list = * 127.0.0.1
  self = send
  no_more

begin transports

remote_smtp:
  driver = smtp
  port = $next_hop_port
  hosts_avoid_tls = *
  hosts_override
  allow_localhost

begin retry

*  *  F,2h,1m
CONF
    chmod 644 "$directory/exim.conf"
    "$exim" -C "$directory/exim.conf" -bV >/dev/null || { echo "exim -bV failed" >&2; exit 1; }
    "$exim" -C "$directory/exim.conf" -bd -oX "$listen_port" -oP "$directory/exim.pid"
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null && exit 0
        sleep 0.1
    done
    echo "exim did not listen on 127.0.0.1:$listen_port; see $directory/log" >&2
    exit 1
    ;;
stop)
    if [ -f "$directory/exim.pid" ]; then
        daemon=$(cat "$directory/exim.pid")
        children=$(pgrep -P "$daemon" || true)
        kill "$daemon" $children 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 start DIR LISTEN_PORT NEXT_HOP_PORT | stop DIR" >&2
    exit 2
    ;;
esac
