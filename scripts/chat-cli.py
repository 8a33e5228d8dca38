#!/usr/bin/env python3
"""A small terminal client for the chat backend, for trying it by hand.

  scripts/chat-cli.py --user alice [--gateway ws://127.0.0.1:8081] [--to bob]
      Connects as alice, syncs, prints what arrives, and sends each line you
      type to the current conversation. Commands:
        /to USER            open (or make) the direct conversation with USER
        /group U1,U2 [TITLE] make a group with you, U1 and U2, and open it
        /conv ID            switch to conversation ID
        /read               mark everything received in this conversation read
        /ping               ping the gateway
        /help  /quit
  scripts/chat-cli.py token USER [--ttl SECONDS]
      Prints a JWT for USER (for curl: -H "Authorization: Bearer $TOKEN").
  scripts/chat-cli.py demo [--gateway URL] [--gateway2 URL]
      Two users on two gateways exchange a message and receipts, printed.

Tokens are minted here with the gateways' shared secret: --secret, else
$CHAT_JWT_SECRET, else the dev secret in .local/dev/jwt-secret (written by
scripts/dev.sh). The helpers come from tests/e2e/chatlib.py.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

try:
    import websockets  # noqa: F401
except ImportError:
    venv = REPO / ".local" / "venv"
    venv_python = venv / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv_python), [str(venv_python), __file__] + sys.argv[1:])
    sys.exit("chat-cli: the websockets package is missing; run scripts/deps.sh first")

import chatlib  # noqa: E402


def read_secret(arg):
    if arg:
        return arg
    if os.environ.get("CHAT_JWT_SECRET"):
        return os.environ["CHAT_JWT_SECRET"]
    path = Path(os.environ.get("CHAT_DEV_DIR", REPO / ".local" / "dev")) / "jwt-secret"
    try:
        return path.read_text().strip()
    except OSError:
        sys.exit(f"chat-cli: no secret: pass --secret, set CHAT_JWT_SECRET, or run scripts/dev.sh (it writes {path})")


def say(*parts):
    print(*parts, flush=True)


def describe(f, me):
    t = f.get("t")
    if t == "hello":
        return None
    if t == "message":
        who = "you" if f["from"] == me else f["from"]
        return f"[{f['conv']} #{f['seq']}] {who}: {f.get('body', '(deleted)')}"
    if t == "receipt":
        return f"  ({f['user']} {'has' if f['kind'] == 'delivered' else 'read'} up to #{f['upto']} in {f['conv']})"
    if t == "sent":
        return f"  (sent {f.get('cid')} as {f['id']})"
    if t == "synced":
        return f"  (synced: {f['count']} missed messages)"
    if t == "error":
        return f"  error {f['code']}: {f.get('message')}" + (" (may retry)" if f.get("retry") else "")
    if t == "pong":
        return "  (pong)"
    if t == "typing":
        return f"  ({f['user']} is typing)" if f.get("state") == "start" else None
    if t == "presence":
        return f"  ({f['user']} is {'online' if f['online'] else 'offline'})"
    return f"  {f}"


async def chat(args):
    secret = read_secret(args.secret)
    token = chatlib.mint_token(args.user, secret, ttl=args.ttl)
    http = chatlib.ws_to_http(args.gateway)
    url = args.gateway if "/v1/ws" in args.gateway else args.gateway.rstrip("/") + "/v1/ws"
    try:
        sock = await chatlib.ChatSocket.connect(url, token, label=args.user, timeout=10)
    except chatlib.Rejected as e:
        sys.exit(f"chat-cli: {e}")
    except OSError as e:
        sys.exit(f"chat-cli: cannot reach {url}: {e} (is scripts/dev.sh up?)")
    say(f"connected to {sock.hello['gw']} as {args.user} (connection {sock.conn}); /help for commands")

    state = {"conv": args.conv, "delivered": {}, "max": {}, "pending": set()}

    def open_conv(members, kind=None, title=None):
        conv = chatlib.create_conversation(http, token, members, kind, title)
        state["conv"] = conv["id"]
        say(f"now in {conv['id']} ({conv['kind']}: {', '.join(conv['members'])})")

    if args.to:
        await asyncio.to_thread(open_conv, [args.to])
    elif args.group:
        await asyncio.to_thread(open_conv, args.group.split(","), "group", "chat-cli group")

    async def printer():
        seen = 0
        while True:
            await sock.wait_state(lambda: len(sock.frames) > seen or sock.closed, timeout=10**9, what="frames")
            while seen < len(sock.frames):  # frames may arrive while this loop awaits
                f = sock.frames[seen]
                seen += 1
                line = describe(f, args.user)
                if line and not (f.get("t") == "sent" and not args.verbose):
                    say(line)
                if f.get("t") == "sent":
                    state["pending"].discard(f.get("cid"))
                if f.get("t") == "error" and f.get("cid"):
                    state["pending"].discard(f["cid"])
                if f.get("t") == "message":
                    conv, seq = f["conv"], f["seq"]
                    state["max"][conv] = max(state["max"].get(conv, 0), seq)
                    if f["from"] != args.user and seq > state["delivered"].get(conv, 0):
                        state["delivered"][conv] = seq
                        await sock.send({"t": "delivered", "conv": conv, "upto": seq})
            sock.inbox.clear()  # nothing here waits on single frames
            if sock.closed:
                say(f"connection closed by the server (code {sock.close_code} {sock.close_reason or ''})")
                return

    printing = asyncio.create_task(printer())
    await sock.send({"t": "sync", "have": {}})

    while not sock.closed:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            if line.startswith("/"):
                cmd, _, rest = line[1:].partition(" ")
                if cmd in ("quit", "exit", "q"):
                    break
                elif cmd == "help":
                    say(__doc__.split("Commands:")[1].split("scripts/chat-cli.py token")[0].rstrip())
                elif cmd == "to" and rest:
                    await asyncio.to_thread(open_conv, [rest.strip()])
                elif cmd == "group" and rest:
                    users, _, title = rest.partition(" ")
                    await asyncio.to_thread(open_conv, users.split(","), "group", title or "chat-cli group")
                elif cmd == "conv" and rest:
                    state["conv"] = rest.strip()
                    say(f"now in {state['conv']}")
                elif cmd == "read" and state["conv"] in state["max"]:
                    await sock.send({"t": "read", "conv": state["conv"], "upto": state["max"][state["conv"]]})
                elif cmd == "ping":
                    await sock.send({"t": "ping"})
                else:
                    say("  ? unknown command or nothing to do; /help")
                continue
            if not state["conv"]:
                say("  no conversation yet: /to USER or /group U1,U2 first")
                continue
            cid = "cli-" + uuid.uuid4().hex[:12]
            state["pending"].add(cid)
            await sock.send({"t": "send", "conv": state["conv"], "cid": cid, "body": line})
        except AssertionError as e:  # an HTTP call that failed
            say(f"  {e}")
    # Input ended (EOF or /quit): let the last sends be answered, bounded.
    deadline = time.monotonic() + 10
    while state["pending"] and not sock.closed and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    printing.cancel()
    await sock.close()


async def demo(args):
    secret = read_secret(args.secret)
    gw1 = args.gateway if "/v1/ws" in args.gateway else args.gateway.rstrip("/") + "/v1/ws"
    gw2 = args.gateway2 if "/v1/ws" in args.gateway2 else args.gateway2.rstrip("/") + "/v1/ws"
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"alice-{suffix}", f"bob-{suffix}"
    tok = {u: chatlib.mint_token(u, secret) for u in (alice, bob)}
    conv = (await asyncio.to_thread(chatlib.create_conversation, chatlib.ws_to_http(gw1), tok[alice], [bob]))["id"]
    say(f"demo: {alice} on {gw1} and {bob} on {gw2}, conversation {conv}")
    a = await chatlib.ChatSocket.connect(gw1, tok[alice], label=alice, timeout=10)
    b = await chatlib.ChatSocket.connect(gw2, tok[bob], label=bob, timeout=10)
    try:
        await a.sync()
        await b.sync()
        t0 = time.monotonic()
        sent = await a.send_message(conv, "hello bob, this is alice", "demo-1")
        say(f"  {alice} -> sent, id {sent['id']} ({(time.monotonic() - t0) * 1000:.0f} ms)")
        m = await b.wait_for(lambda f: f.get("t") == "message" and f.get("id") == sent["id"], what="the message")
        say(f"  {bob} <- #{m['seq']} from {m['from']}: {m['body']} ({(time.monotonic() - t0) * 1000:.0f} ms after send)")
        await b.send({"t": "delivered", "conv": conv, "upto": m["seq"]})
        await b.send({"t": "read", "conv": conv, "upto": m["seq"]})
        for kind in ("delivered", "read"):
            r = await a.wait_for(lambda f: f.get("t") == "receipt" and f.get("kind") == kind, what=f"{kind} receipt")
            say(f"  {alice} <- receipt: {r['user']} {kind} up to #{r['upto']}")
        reply = await b.send_message(conv, "hi alice!", "demo-2")
        m = await a.wait_for(lambda f: f.get("t") == "message" and f.get("id") == reply["id"], what="the reply")
        say(f"  {alice} <- #{m['seq']} from {m['from']}: {m['body']}")
        say("demo: ok")
    finally:
        await a.close()
        await b.close()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "token":
        p = argparse.ArgumentParser(prog="chat-cli.py token")
        p.add_argument("user")
        p.add_argument("--ttl", type=int, default=24 * 3600)
        p.add_argument("--secret")
        a = p.parse_args(sys.argv[2:])
        print(chatlib.mint_token(a.user, read_secret(a.secret), ttl=a.ttl))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "demo":
        p = argparse.ArgumentParser(prog="chat-cli.py demo")
        p.add_argument("--gateway", default="ws://127.0.0.1:8081")
        p.add_argument("--gateway2", default="ws://127.0.0.1:8082")
        p.add_argument("--secret")
        a = p.parse_args(sys.argv[2:])
        try:
            chatlib.run(demo(a), timeout=60)
        except (AssertionError, OSError, asyncio.TimeoutError, chatlib.ChatError, chatlib.Rejected) as e:
            print(f"demo: FAILED: {e}", file=sys.stderr)
            return 1
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True)
    p.add_argument("--gateway", default="ws://127.0.0.1:8081", help="ws://host:port (default %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--to", help="open the direct conversation with this user")
    g.add_argument("--group", help="make a group with these users (comma-separated)")
    g.add_argument("--conv", help="open this conversation id")
    p.add_argument("--secret")
    p.add_argument("--ttl", type=int, default=24 * 3600)
    p.add_argument("-v", "--verbose", action="store_true", help="also print `sent` acknowledgements")
    a = p.parse_args()
    try:
        asyncio.run(chat(a))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
