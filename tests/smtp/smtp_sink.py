#!/usr/bin/env python3
"""A throw-away SMTP server for authkit's SMTP tests (`authkit/tests/smtp.rs`).

It listens on 127.0.0.1 only, prints `PORT <n>` on its first line of standard output once it
accepts connections, and stops when its standard input closes (so it never outlives the test
that started it) or when it is killed.

Each accepted message is written to the output directory as `NNNN.eml` (the bytes received
after DATA) next to `NNNN.envelope` (`MAIL FROM:` and `RCPT TO:` lines). The `.eml` file is
renamed into place last, so a reader that sees it also sees the envelope.

Modes:
  accept                  accept everything
  refuse-then-accept      answer the first --refuse-count commands of --stage with 451
  always-refuse           answer every command of --stage with 550

Needs the `aiosmtpd` package (`python3 -m pip install aiosmtpd`).
"""

import argparse
import asyncio
import os
import socket
import sys
import threading

from aiosmtpd.smtp import SMTP


class Sink:
    """aiosmtpd handler: refuses or stores messages as the mode says."""

    def __init__(self, out_dir, mode, refuse_count, stage):
        self.out_dir = out_dir
        self.mode = mode
        self.refuse_count = refuse_count
        self.stage = stage
        self.refused = 0
        self.accepted = 0

    def _refusal(self, stage):
        if stage != self.stage:
            return None
        if self.mode == "always-refuse":
            return "550 5.1.1 Mailbox unavailable"
        if self.mode == "refuse-then-accept" and self.refused < self.refuse_count:
            self.refused += 1
            return "451 4.3.0 Try again later"
        return None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self._refusal("rcpt")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        refusal = self._refusal("data")
        if refusal:
            return refusal
        self.accepted += 1
        stem = os.path.join(self.out_dir, "%04d" % self.accepted)
        lines = ["MAIL FROM:%s" % envelope.mail_from]
        lines += ["RCPT TO:%s" % rcpt for rcpt in envelope.rcpt_tos]
        _write_atomically(stem + ".envelope", ("\n".join(lines) + "\n").encode())
        _write_atomically(stem + ".eml", envelope.original_content)
        return "250 2.0.0 Accepted"


def _write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _stop_when_stdin_closes(loop, stop):
    def wait():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, daemon=True).start()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for accepted messages")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument(
        "--mode",
        choices=["accept", "refuse-then-accept", "always-refuse"],
        default="accept",
    )
    parser.add_argument("--refuse-count", type=int, default=1)
    parser.add_argument("--stage", choices=["rcpt", "data"], default="rcpt")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    handler = Sink(args.out, args.mode, args.refuse_count, args.stage)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test"), sock=sock
    )
    port = sock.getsockname()[1]

    stop = asyncio.Event()
    _stop_when_stdin_closes(loop, stop)
    print("PORT %d" % port, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
