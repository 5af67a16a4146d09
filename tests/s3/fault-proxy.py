#!/usr/bin/env python3
"""A loopback TCP proxy in front of radosgw that spoils some connections.

usage: fault-proxy.py UPSTREAM_PORT PORT_FILE FAULT_LOG MODE

Listens on a free 127.0.0.1 port (written to PORT_FILE once listening) and
relays every connection to 127.0.0.1:UPSTREAM_PORT byte for byte, so the
SigV4 signatures (which cover the Host header the client sent) still hold
and "Expect: 100-continue" works as it does without the proxy.  MODE says
which new connections get a fault instead:
  every:N   every Nth connection, in turn:
              slowdown  a 503 SlowDown answer to its first request
              drop      closed after the first request header, no answer
              internal  a 500 InternalError answer
              cut       relayed, but only the first 64 bytes of the server's
                        answer reach the client, then a reset: the server
                        acted on the request and the client cannot know
  always    every connection: a 503 SlowDown answer
  cut-exclusive
            everything relayed, except the answer to the first PUT with
            "If-None-Match": the connection is reset once its body went up
            and before a byte of the answer comes back (curl then resends it
            by itself on a fresh connection when the connection was reused)
Each fault appends its name to FAULT_LOG.  Runs until killed.

(tests/harness/fault-proxy.py relays request by request; it does not pass a
"100 Continue" on and wait for the final answer, which curl's PUTs need.)
"""
import os
import select
import socket
import socketserver
import struct
import sys
import threading

UPSTREAM = ("127.0.0.1", int(sys.argv[1]))
PORT_FILE, FAULT_LOG, MODE = sys.argv[2], sys.argv[3], sys.argv[4]
EVERY = int(MODE.split(":")[1]) if MODE.startswith("every:") else 1
KINDS = ("slowdown", "drop", "internal", "cut")
lock = threading.Lock()
count = {"conn": 0, "fault": 0}

ANSWERS = {
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "internal": (500, "Internal Server Error", "InternalError",
                 "We encountered an internal error. Please try again."),
}


def log(what):
    with lock, open(FAULT_LOG, "a") as f:
        f.write(what + "\n")


def read_header(sock):
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def answer(sock, head, kind):
    status, reason, code, message = ANSWERS[kind]
    body = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code>'
            "<Message>%s</Message></Error>" % (code, message)).encode()
    if head.startswith(b"HEAD "):
        body = b""
    sock.sendall(("HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\n"
                  "Content-Length: %d\r\nConnection: close\r\n\r\n"
                  % (status, reason, len(body))).encode() + body)


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def relay(client, up, answer_cap=None):
    """Both ways until one side closes; at most answer_cap bytes of answer."""
    socks = [client, up]
    sent = 0
    while True:
        ready, _, _ = select.select(socks, [], [], 120)
        if not ready:
            return
        for s in ready:
            data = s.recv(65536)
            if not data:
                return
            if s is up and answer_cap is not None:
                data = data[:answer_cap - sent]
                client.sendall(data)
                sent += len(data)
                if sent >= answer_cap:
                    reset(client)
                    return
            else:
                (up if s is client else client).sendall(data)


def relay_cut_exclusive(client, up):
    """Relay, parsing the requests, until the first exclusive PUT's answer."""
    buf, body_left, armed = b"", 0, False
    socks = [client, up]
    while True:
        ready, _, _ = select.select(socks, [], [], 120)
        if not ready:
            return
        for s in ready:
            data = s.recv(65536)
            if not data:
                return
            if s is up:
                if armed and body_left == 0:        # the answer: cut it
                    with lock:
                        count["cut"] = True
                    log("cut-exclusive")
                    reset(client)
                    return
                client.sendall(data)
                continue
            up.sendall(data)
            while data:
                if body_left:
                    n = min(body_left, len(data))
                    body_left -= n
                    data = data[n:]
                    continue
                buf += data
                data = b""
                if b"\r\n\r\n" not in buf:
                    break
                head, data = buf.split(b"\r\n\r\n", 1)
                buf = b""
                lines = head.split(b"\r\n")
                headers = dict((k.strip().lower(), v.strip()) for k, _, v in
                               (l.partition(b":") for l in lines[1:]))
                body_left = int(headers.get(b"content-length", b"0"))
                with lock:
                    if (lines[0].startswith(b"PUT ") and b"if-none-match" in headers
                            and not count.get("cut")):
                        armed = True


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        with lock:
            count["conn"] += 1
            kind = None
            if MODE == "always":
                kind = "slowdown"
            elif MODE.startswith("every:") and count["conn"] % EVERY == 0:
                kind = KINDS[count["fault"] % len(KINDS)]
                count["fault"] += 1
        client = self.request
        if kind in ("slowdown", "drop", "internal"):
            head = read_header(client)
            log(kind)
            if kind != "drop":
                try:
                    answer(client, head, kind)
                except OSError:
                    pass
            return
        try:
            up = socket.create_connection(UPSTREAM)
        except OSError:
            return
        if kind == "cut":
            log(kind)
        try:
            if MODE == "cut-exclusive":
                relay_cut_exclusive(client, up)
            else:
                relay(client, up, 64 if kind == "cut" else None)
        except OSError:
            pass
        finally:
            up.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write("%d\n" % server.server_address[1])
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
