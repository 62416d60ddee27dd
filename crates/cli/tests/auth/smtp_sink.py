"""An SMTP sink for the auth tests: accepts every message on 127.0.0.1 at
the given port (0: any free one) and appends each, as one JSON line
{"to": [...], "from": ..., "subject": ..., "body": ...}, to the given
file. Prints the port it listens on once ready; runs until killed.

Usage: smtp_sink.py PORT FILE   (with aiosmtpd, from install-auth-tools.sh)
"""
import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        line = {
            "to": list(envelope.rcpt_tos),
            "from": envelope.mail_from,
            "subject": str(message["subject"] or ""),
            "body": body.get_content() if body is not None else "",
        }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        return "250 OK"


async def serve(port, path):
    open(path, "a").close()
    sink = Sink(path)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="wok-test-sink"), host="127.0.0.1", port=port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))


if __name__ == "__main__":
    main()
