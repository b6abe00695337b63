#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) that is not herald, for tests/message_smtp.rs.

Listens on 127.0.0.1, port 0; prints the bound port as the first line of
stdout, then one JSON line per message received:
{"mail_from": ..., "rcpt_tos": [...], "data": "<raw message>",
"peer_port": <the client's port, to tell connections apart>}.

Recipients whose local part starts with `reject` are answered 550; the local
part `later` is answered 451 the first time (per address), 250 after; after a
message to the local part `hangup` is accepted, the server closes that
connection (as a relay does at its idle timeout). Each JSON line also says
whether the message came over TLS ("tls").

Options: `--auth` (below); `--tls CERT KEY`: TLS from the first byte
(smtps); `--starttls CERT KEY`: STARTTLS offered and required before MAIL.

aiosmtpd's Controller cannot report a port-0 bind, so the server is made
with asyncio directly (the same SMTP protocol class the Controller uses).
Stops when stdin closes (the test ends) or on SIGTERM.
"""
import asyncio
import json
import logging
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# With `--auth`: AUTH (PLAIN/LOGIN, allowed without TLS) is required, and only
# herald / s3cret is accepted.
USER, PASSWORD = b"herald", b"s3cret"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (USER, PASSWORD)
    # handled=False: aiosmtpd answers the 535 itself.
    return AuthResult(success=ok, handled=False)


class Handler:
    def __init__(self):
        self.deferred = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local == "later" and address not in self.deferred:
            self.deferred.add(address)
            return "451 4.7.1 <%s>: Recipient address rejected: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        line = json.dumps(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": data,
                "peer_port": session.peer[1],
                "tls": server.transport.get_extra_info("ssl_object") is not None,
            }
        )
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if any(a.split("@", 1)[0].lower() == "hangup" for a in envelope.rcpt_tos):
            # Runs after the reply below is written; close() sends it first.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 2.0.0 Ok: queued"


async def main():
    # AUTH without TLS is this test peer's choice; keep its stderr for errors.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    loop = asyncio.get_running_loop()
    handler = Handler()
    args = sys.argv[1:]
    options = {}
    if "--auth" in args:
        options = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    implicit = None
    for flag in ("--tls", "--starttls"):
        if flag in args:
            at = args.index(flag)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args[at + 1], args[at + 2])
            if flag == "--tls":
                implicit = context
            else:
                options.update(tls_context=context, require_starttls=True)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", enable_SMTPUTF8=True, **options),
        host="127.0.0.1",
        port=0,
        ssl=implicit,
    )
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    # The test holds stdin open; its end (the test process gone) stops the sink.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
