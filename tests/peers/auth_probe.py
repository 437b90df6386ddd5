#!/usr/bin/python3
"""An SMTP AUTH client for the relay's tests, built on Python's smtplib and ssl (OpenSSL), so
the relay's AUTH is checked by a client we did not write.

It connects, says EHLO, tries MAIL before authenticating, upgrades with STARTTLS (or, with
--implicit, speaks TLS from the start, port 465 style), says EHLO again, authenticates with one
mechanism (PLAIN with an initial response, or LOGIN through its two prompts) and, when that
succeeded, sends one message. It prints one JSON object on stdout
with both EHLO replies and the code and text of every reply it got; the password is only ever
written to the relay.
"""

import argparse
import json
import smtplib
import ssl

TIMEOUT = 15


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--mechanism", choices=["PLAIN", "LOGIN"], required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--recipient", default="someone@elsewhere.test")
    parser.add_argument("--implicit", action="store_true")
    args = parser.parse_args()

    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = False  # The TLS tests check the certificate; here only AUTH matters.

    result = {}
    if args.implicit:
        smtp = smtplib.SMTP_SSL(args.host, args.port, timeout=TIMEOUT, context=ctx)
        result["ehlo_before"] = ""
        result["ehlo_after"] = smtp.ehlo()[1].decode()
        result["mail_before_auth"] = smtp.docmd("MAIL FROM:<alice@client.test>")[0]
        smtp.rset()
    else:
        smtp = smtplib.SMTP(args.host, args.port, timeout=TIMEOUT)
        result["ehlo_before"] = smtp.ehlo()[1].decode()
        result["mail_before_auth"] = smtp.docmd("MAIL FROM:<alice@client.test>")[0]
        smtp.starttls(context=ctx)
        result["ehlo_after"] = smtp.ehlo()[1].decode()

    smtp.user, smtp.password = args.user, args.password
    try:
        if args.mechanism == "PLAIN":
            code, text = smtp.auth("PLAIN", smtp.auth_plain)
        else:
            # No initial response: the relay must prompt for the user name, then the password.
            code, text = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
    except smtplib.SMTPAuthenticationError as error:
        code, text = error.smtp_code, error.smtp_error
    result["auth"] = code
    result["auth_text"] = text.decode()

    if code == 235:
        result["mail"] = smtp.docmd("MAIL FROM:<alice@client.test>")[0]
        result["rcpt"] = smtp.docmd("RCPT TO:<%s>" % args.recipient)[0]
        body = "Subject: auth probe\r\nMessage-ID: <auth-probe@client.test>\r\n\r\nhello\r\n"
        result["data_done"] = smtp.data(body)[0]
    try:
        smtp.quit()
    except smtplib.SMTPServerDisconnected:
        result["closed_by_relay"] = True

    print(json.dumps(result))


if __name__ == "__main__":
    main()
