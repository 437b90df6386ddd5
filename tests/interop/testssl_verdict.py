#!/usr/bin/env python3
"""Reads a testssl.sh JSON file and fails unless the TLS profile is what docs/security.md says:
only TLS 1.2 and 1.3, no weak cipher category, and forward secrecy on every suite offered."""

import json
import sys

NOT_OFFERED = [
    "SSLv2", "SSLv3", "TLS1", "TLS1_1",
    "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
    "cipherlist_3DES_IDEA", "cipherlist_AVERAGE",
]
OFFERED = ["TLS1_2", "TLS1_3", "PFS"]


def main(path):
    findings = {}
    suites = []
    for entry in json.load(open(path)):
        findings[entry["id"]] = entry["finding"]
        if entry["id"].startswith("cipher-tls") or entry["id"].startswith("cipher_x"):
            suites.append(entry["finding"])

    problems = []
    for name in NOT_OFFERED:
        if not findings.get(name, "").startswith("not offered"):
            problems.append("%s: expected 'not offered', found %r" % (name, findings.get(name)))
    for name in OFFERED:
        if not findings.get(name, "").startswith("offered"):
            problems.append("%s: expected 'offered', found %r" % (name, findings.get(name)))
    if not suites:
        problems.append("no cipher suites listed (testssl --each-cipher found none)")
    for suite in suites:
        # Columns: [protocol,] hex code, OpenSSL name, key exchange, ...
        words = suite.split()
        code = next((i for i, word in enumerate(words) if word.startswith("x")), None)
        key_exchange = words[code + 2] if code is not None and len(words) > code + 2 else ""
        if key_exchange not in ("ECDH", "DH"):
            problems.append("suite without ephemeral key exchange: %s" % suite)

    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
