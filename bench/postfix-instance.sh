#!/usr/bin/env bash
# A private Postfix instance configured as a pure relay, for side-by-side benchmarks.
#
# Usage: bench/postfix-instance.sh start DIR LISTEN_PORT NEXT_HOP_PORT
#        bench/postfix-instance.sh stop DIR
#
# The instance lives entirely under DIR (configuration, queue, data), listens on
# 127.0.0.1:LISTEN_PORT, relays every recipient domain to [127.0.0.1]:NEXT_HOP_PORT, and keeps
# Postfix's normal durability: each message is fsync'ed into its queue file before `250`.
# It needs the Debian package postfix (installed by the bench harness) and root, as Postfix
# does; it never touches the system instance in /etc/postfix.
set -euo pipefail

command=${1:?start or stop}
directory=$(realpath -m "${2:?instance directory}")

case "$command" in
start)
    listen_port=${3:?listen port}
    next_hop_port=${4:?next hop port}
    mkdir -p "$directory/etc" "$directory/spool" "$directory/data"
    chown postfix "$directory/data"
    cp /etc/postfix/master.cf "$directory/etc/master.cf"
    cp /etc/postfix/dynamicmaps.cf "$directory/etc/" 2>/dev/null || true
    cp -r /etc/postfix/dynamicmaps.cf.d "$directory/etc/" 2>/dev/null || true
    # The stock smtpd line listens on port 25; this instance listens on its own port instead.
    sed -i "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$listen_port      inet  n       -       n       -       -       smtpd/" \
        "$directory/etc/master.cf"
    grep -q "^127.0.0.1:$listen_port " "$directory/etc/master.cf" \
        || { echo "could not set the listener in master.cf" >&2; exit 1; }
    # POSTFIX_TLS_CERTIFICATE and POSTFIX_TLS_KEY (PEM files) offer STARTTLS, for scenario f.
    tls_level=none
    [ -n "${POSTFIX_TLS_CERTIFICATE:-}" ] && tls_level=may
    cat >"$directory/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $directory/spool
data_directory = $directory/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$next_hop_port
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = $tls_level
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtp_destination_concurrency_limit = 20
default_destination_concurrency_limit = 20
message_size_limit = 52428800
maillog_file_prefixes = $directory
maillog_file = $directory/maillog
alias_maps =
alias_database =
biff = no
shlib_directory = /usr/lib/postfix
CONF
    if [ "$tls_level" = may ]; then
        cat >>"$directory/etc/main.cf" <<CONF
smtpd_tls_cert_file = $POSTFIX_TLS_CERTIFICATE
smtpd_tls_key_file = ${POSTFIX_TLS_KEY:?POSTFIX_TLS_KEY must name the key of the certificate}
CONF
    fi
    # Postfix reports configuration errors to a terminal only; script(1) gives it one.
    script -qc "postfix -c $directory/etc check" /dev/null || { echo "postfix check failed" >&2; exit 1; }
    postfix -c "$directory/etc" start
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null && exit 0
        sleep 0.1
    done
    echo "postfix did not listen on 127.0.0.1:$listen_port; see $directory/maillog" >&2
    exit 1
    ;;
stop)
    postfix -c "$directory/etc" stop 2>/dev/null || true
    ;;
*)
    echo "usage: $0 start DIR LISTEN_PORT NEXT_HOP_PORT | stop DIR" >&2
    exit 2
    ;;
esac
