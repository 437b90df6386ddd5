#!/usr/bin/python3
"""A TLS client for the relay's tests, built on Python's ssl module (OpenSSL), so the relay's
rustls server is checked by a TLS stack we did not write.

Each scenario connects to the relay, does one thing and prints one JSON object on stdout:

  starttls     EHLO, STARTTLS, EHLO again, then one message; reports both EHLO replies,
               the negotiated version and cipher, the server certificate's SHA-256, and the
               reply to each transaction command
  implicit     the same over implicit TLS (port 465 style), without STARTTLS
  injection    pipelines MAIL FROM after STARTTLS in the same write, then after the handshake
               sends RCPT TO: a relay that discarded the plaintext answers 503
  resumption   two implicit-TLS connections; reports whether the second resumed the first
  version      tries one TLS version only (--tls-version 1.0|1.1|1.2|1.3); reports success

Options name the CA file that signs the relay's certificates, the SNI name to ask for, and an
optional client certificate and key.
"""

import argparse
import hashlib
import json
import smtplib
import socket
import ssl
import sys

TIMEOUT = 10


def context(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = False  # The test checks which certificate came; SNI names vary.
    ctx.verify_mode = ssl.CERT_REQUIRED
    if args.client_certificate:
        ctx.load_cert_chain(args.client_certificate, args.client_key)
    return ctx


def tls_facts(sock):
    der = sock.getpeercert(binary_form=True)
    return {
        "version": sock.version(),
        "cipher": sock.cipher()[0],
        "certificate_sha256": hashlib.sha256(der).hexdigest(),
    }


def transaction(smtp, args):
    replies = {}
    replies["mail"] = smtp.docmd("MAIL FROM:<sender@client.test>")[0]
    replies["rcpt"] = smtp.docmd("RCPT TO:<%s>" % args.recipient)[0]
    if replies["rcpt"] == 250:
        body = "Subject: tls probe\r\nMessage-ID: <%s@client.test>\r\n\r\nhello over TLS\r\n" % (
            args.message_id
        )
        if args.from_header:
            body = "From: %s\r\n" % args.from_header + body
        replies["data_done"] = smtp.data(body)[0]
    return replies


def starttls(args):
    smtp = smtplib.SMTP(args.host, args.port, timeout=TIMEOUT)
    code, before = smtp.ehlo("client.test")
    smtp._host = args.sni  # smtplib sends the connected host name as SNI; ask for ours.
    smtp.starttls(context=context(args))
    facts = tls_facts(smtp.sock)
    code, after = smtp.ehlo("client.test")
    result = {
        "ehlo_before": before.decode(),
        "ehlo_after": after.decode(),
        **facts,
        **transaction(smtp, args),
    }
    smtp.quit()
    return result


class NamedSMTP_SSL(smtplib.SMTP_SSL):
    """SMTP_SSL that asks for `sni` rather than the address it connects to."""

    sni = None

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self.sni)


def implicit(args):
    NamedSMTP_SSL.sni = args.sni
    smtp = NamedSMTP_SSL(args.host, args.port, timeout=TIMEOUT, context=context(args))
    code, ehlo = smtp.ehlo("client.test")
    result = {"ehlo_after": ehlo.decode(), **tls_facts(smtp.sock), **transaction(smtp, args)}
    smtp.quit()
    return result


def read_reply(stream):
    lines = []
    while True:
        line = stream.readline()
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line.decode().rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return lines


def injection(args):
    raw = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
    plain = raw.makefile("rb")
    read_reply(plain)  # greeting
    raw.sendall(b"EHLO client.test\r\n")
    read_reply(plain)
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@attacker.test>\r\n")
    starttls_reply = read_reply(plain)
    tls = context(args).wrap_socket(raw, server_hostname=args.sni)
    encrypted = tls.makefile("rb")
    tls.sendall(b"EHLO client.test\r\n")
    ehlo = read_reply(encrypted)
    tls.sendall(("RCPT TO:<%s>\r\n" % args.recipient).encode())
    rcpt = read_reply(encrypted)
    tls.sendall(b"QUIT\r\n")
    return {"starttls": starttls_reply, "ehlo_after": ehlo, "rcpt": rcpt}


def resumption(args):
    ctx = context(args)
    outcomes = []
    session = None
    for _ in range(2):
        raw = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
        tls = ctx.wrap_socket(raw, server_hostname=args.sni, session=session)
        stream = tls.makefile("rb")
        read_reply(stream)  # The greeting; TLS 1.3 tickets arrive with the first data.
        tls.sendall(b"QUIT\r\n")
        read_reply(stream)
        outcomes.append(tls.session_reused)
        session = tls.session
        tls.close()
    return {"first_resumed": outcomes[0], "second_resumed": outcomes[1]}


def version(args):
    ctx = context(args)
    chosen = {
        "1.0": ssl.TLSVersion.TLSv1,
        "1.1": ssl.TLSVersion.TLSv1_1,
        "1.2": ssl.TLSVersion.TLSv1_2,
        "1.3": ssl.TLSVersion.TLSv1_3,
    }[args.tls_version]
    try:
        ctx.minimum_version = chosen
        ctx.maximum_version = chosen
        # OpenSSL refuses TLS 1.0/1.1 at its default security level before asking the server.
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as error:
        return {"handshake": False, "error": "client cannot offer it: %s" % error}
    raw = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=args.sni)
        facts = tls_facts(tls)
        tls.close()
        return {"handshake": True, **facts}
    except (ssl.SSLError, ConnectionError) as error:
        return {"handshake": False, "error": str(error)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--sni", default="relay.test")
    parser.add_argument("--client-certificate")
    parser.add_argument("--client-key")
    parser.add_argument("--recipient", default="user@example.com")
    parser.add_argument("--message-id", default="probe")
    parser.add_argument("--from-header", help="a From field to put on the message")
    parser.add_argument("--tls-version", default="1.3")
    args = parser.parse_args()
    scenarios = {
        "starttls": starttls,
        "implicit": implicit,
        "injection": injection,
        "resumption": resumption,
        "version": version,
    }
    json.dump(scenarios[args.scenario](args), sys.stdout)
    print()


if __name__ == "__main__":
    main()
