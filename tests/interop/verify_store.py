"""Checks what the interop clients left in postern's spool: the four messages, each with the
envelope and body the client sent. Reads the files `postern spool export` writes (the envelope as
SMTP commands, then `DATA`, then the message). Usage: verify_store.py EXPORT_DIR."""

import pathlib
import sys

exported = pathlib.Path(sys.argv[1])
messages = {}
for path in exported.glob("*.msg"):
    raw = path.read_bytes()
    envelope, _, content = raw.partition(b"DATA\r\n")
    recipients = [
        line[len(b"RCPT TO:<") : line.index(b">")].decode("utf-8")
        for line in envelope.split(b"\r\n")
        if line.startswith(b"RCPT TO:<")
    ]
    for recipient in recipients:
        messages[recipient] = (envelope, content)

expected = {
    "pipelined@example.com": b"pipelined through postern",
    "large@example.com": b"x" * 76,
    "eightbit@example.com": "Grüße aus Köln".encode("utf-8"),
    "\u7528\u6237@example.com": b"Unicode envelope via smtplib.",
}
problems = []
for recipient, needle in expected.items():
    if recipient not in messages:
        problems.append(f"no message for {recipient}")
        continue
    envelope, content = messages[recipient]
    if not content.startswith(b"Received: from "):
        problems.append(f"{recipient}: no Received header on top")
    if needle not in content:
        problems.append(f"{recipient}: body does not contain {needle[:30]!r}")
large = messages.get("large@example.com")
if large and len(large[1]) < 1024 * 1024:
    problems.append(f"large@example.com: only {len(large[1])} bytes stored")
utf8 = messages.get("\u7528\u6237@example.com")
if utf8 and b"SMTPUTF8" not in utf8[0]:
    problems.append("the SMTPUTF8 message lost its SMTPUTF8 parameter")
if len(messages) != len(expected):
    problems.append(f"{len(messages)} messages stored, expected {len(expected)}")

if problems:
    sys.exit("\n".join(problems))
print(f"{len(messages)} messages stored as sent")
