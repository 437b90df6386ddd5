#!/usr/bin/python3
"""Verifies every DKIM-Signature of each message file with dkimpy (Debian: python3-dkim).

Usage: dkim_verify.py KEYS_JSON MESSAGE_FILE...

KEYS_JSON maps "<selector>._domainkey.<domain>" to the TXT record value, so no DNS is asked.
Prints one JSON line per message: a list with one object per signature, topmost first:
{"algorithm": "ed25519-sha256", "domain": "example.com", "verified": true, "error": null}.
"""

import json
import re
import sys

import dkim


def main():
    with open(sys.argv[1]) as keys_file:
        keys = {name.lower().rstrip("."): value for name, value in json.load(keys_file).items()}

    def dnsfunc(name, timeout=5):
        value = keys.get(name.decode().lower().rstrip("."))
        return value.encode() if value is not None else None

    for path in sys.argv[2:]:
        with open(path, "rb") as message_file:
            message = message_file.read()
        verifier = dkim.DKIM(message)
        signatures = [
            value for name, value in verifier.headers if name.lower() == b"dkim-signature"
        ]
        results = []
        for index, value in enumerate(signatures):
            tags = re.sub(rb"\s+", b"", value)
            algorithm = re.search(rb"(?:^|;)a=([^;]*)", tags)
            domain = re.search(rb"(?:^|;)d=([^;]*)", tags)
            result = {
                "algorithm": algorithm.group(1).decode() if algorithm else None,
                "domain": domain.group(1).decode() if domain else None,
                "verified": False,
                "error": None,
            }
            try:
                result["verified"] = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
            except dkim.DKIMException as error:
                result["error"] = str(error)
            results.append(result)
        print(json.dumps(results))


if __name__ == "__main__":
    main()
