"""A next hop for delivery tests, built on aiosmtpd (Debian python3-aiosmtpd), that can be told
to misbehave a given number of times before it behaves.

Usage: fault_smtp.py --port PORT --log FILE [--rcpt CODE:TIMES] [--data CODE:TIMES]
                     [--drop-in-data TIMES] [--hang-in-data TIMES]
                     [--tls-certificate FILE --tls-key FILE]

--rcpt 451:2       the first two RCPT commands are answered 451 (then 250)
--data 550:1       the first end-of-data is answered 550 (a code of 4xx or 5xx)
--drop-in-data 1   the first time, the connection is cut after the data, before the reply
--hang-in-data 1   the first time, no reply at all after the data
--tls-certificate  offer STARTTLS with this certificate chain (PEM) and --tls-key

Every message it accepts is appended to FILE as one JSON line: the client's address and port
(one per connection), MAIL FROM, the recipients, the X-Test-Id and Subject headers, and the
content type (with its report-type, for bounces), and the TLS version the message came over
(null in clear text). "ready" is printed
on stdout once it listens.
"""

import argparse
import asyncio
import email
import json
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller


class Countdown:
    """A misbehaviour that happens `times` times, then stops."""

    def __init__(self, spec):
        self.code, self.times = (None, 0)
        if spec:
            code, times = spec.split(":")
            self.code, self.times = code, int(times)

    def fire(self):
        if self.times > 0:
            self.times -= 1
            return True
        return False


class FaultyHandler:
    def __init__(self, args):
        self.log = open(args.log, "a", buffering=1)
        self.rcpt = Countdown(args.rcpt)
        self.data = Countdown(args.data)
        self.drop = Countdown(f"0:{args.drop_in_data}")
        self.hang = Countdown(f"0:{args.hang_in_data}")
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt.fire():
            return f"{self.rcpt.code} {self.rcpt.code[0]}.0.0 told to refuse this recipient"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.drop.fire():
            server.transport.abort()
            return "421 4.0.0 never seen"
        if self.hang.fire():
            await asyncio.sleep(3600)
        if self.data.fire():
            return f"{self.data.code} {self.data.code[0]}.0.0 told to refuse this message"
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        record = {
            "peer": f"{session.peer[0]}:{session.peer[1]}",
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "id": message.get("X-Test-Id"),
            "content_type": message.get_content_type(),
            "report_type": message.get_param("report-type"),
            "subject": message.get("Subject"),
            "bytes": len(envelope.original_content or envelope.content),
            "tls": session.ssl["ssl_object"].version() if session.ssl else None,
        }
        with self.lock:
            self.log.write(json.dumps(record) + "\n")
        return "250 2.0.0 accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--rcpt")
    parser.add_argument("--data")
    parser.add_argument("--drop-in-data", type=int, default=0)
    parser.add_argument("--hang-in-data", type=int, default=0)
    parser.add_argument("--tls-certificate")
    parser.add_argument("--tls-key")
    args = parser.parse_args()

    tls = {}
    if args.tls_certificate:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_certificate, args.tls_key)
        tls = {"tls_context": context}
    controller = Controller(
        FaultyHandler(args),
        hostname="127.0.0.1",
        port=args.port,
        decode_data=False,
        enable_SMTPUTF8=True,
        **tls,
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
