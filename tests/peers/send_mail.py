#!/usr/bin/env python3
"""Sends the message on stdin with Python's smtplib (a client that is not
herald): send_mail.py HOST PORT MAIL_FROM RCPT [RCPT...].

Prints one JSON line: {"ok": true, "refused": {rcpt: [code, text]}} when
the message was taken for at least one recipient, else
{"ok": false, "code": N, "text": "..."}; exits 0 either way (the test
asserts on the JSON), 1 when no SMTP answer could be had at all.
"""
import json
import smtplib
import sys


def main():
    host, port, mail_from, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    data = sys.stdin.buffer.read()
    try:
        with smtplib.SMTP(host, port, timeout=20) as s:
            refused = s.sendmail(mail_from, rcpts, data)
            out = {"ok": True, "refused": {k: [c, t.decode("utf-8", "replace")] for k, (c, t) in refused.items()}}
    except smtplib.SMTPRecipientsRefused as e:
        (code, text) = next(iter(e.recipients.values()))
        out = {"ok": False, "code": code, "text": text.decode("utf-8", "replace")}
    except smtplib.SMTPResponseException as e:
        out = {"ok": False, "code": e.smtp_code, "text": e.smtp_error.decode("utf-8", "replace")}
    except (OSError, smtplib.SMTPException) as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
