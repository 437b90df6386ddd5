"""Sends one message with an internationalized sender and recipient through Python's smtplib,
which must negotiate SMTPUTF8 (RFC 6531) with postern. Usage: smtputf8.py HOST PORT."""

import smtplib
import sys

host, port = sys.argv[1], int(sys.argv[2])
sender = "jos\u00e9@interop.test"
recipient = "\u7528\u6237@example.com"
message = (
    f"From: {sender}\r\nTo: {recipient}\r\nSubject: SMTPUTF8 check\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nUnicode envelope via smtplib.\r\n"
).encode("utf-8")

with smtplib.SMTP(host, port, timeout=15) as smtp:
    smtp.ehlo("smtplib.interop.test")
    if not smtp.has_extn("smtputf8"):
        sys.exit("postern did not advertise SMTPUTF8")
    refused = smtp.sendmail(sender, [recipient], message, mail_options=["SMTPUTF8"])
    if refused:
        sys.exit(f"recipients refused: {refused}")
    # Without SMTPUTF8 the same address must be refused (RFC 6531 section 3.7.4.1).
    smtp.rset()
    smtp.command_encoding = "utf-8"  # smtplib would refuse to send the raw UTF-8 itself
    code, _ = smtp.docmd("MAIL", "FROM:<plain@interop.test>")
    if code != 250:
        sys.exit(f"plain MAIL FROM refused: {code}")
    code, text = smtp.docmd("RCPT", f"TO:<{recipient}>")
    if code != 553:
        sys.exit(f"a UTF-8 address without SMTPUTF8 got {code} {text!r}, expected 553")
print("SMTPUTF8 accepted with the parameter and refused without it")
