"""TCP helpers the policy tests run inside instance namespaces (plain Python sockets, so the
tests need no nc or socat and can tell "connected" from "timed out" exactly).

  tcpprobe.py serve PORT...          echo server on every PORT; prints "ready" once listening
  tcpprobe.py connect IP PORT SECS   exit 0 when the connection is made within SECS, else 1
  tcpprobe.py session IP PORT        connects ("connected" or "failed"), then for each line on
                                     stdin sends it and prints "echo LINE" or "timeout"
"""

import socket
import sys
import threading


def serve(ports):
    listeners = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        listeners.append(s)

    def echo(conn):
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept(s):
        while True:
            conn, _ = s.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    for s in listeners:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def connect(ip, port, secs):
    try:
        socket.create_connection((ip, port), timeout=secs).close()
        return 0
    except OSError:
        return 1


def session(ip, port):
    try:
        s = socket.create_connection((ip, port), timeout=3)
    except OSError as e:
        print(f"failed {e}", flush=True)
        return 1
    print("connected", flush=True)
    s.settimeout(3)
    for line in sys.stdin:
        line = line.strip()
        s.sendall(line.encode() + b"\n")
        try:
            got = s.recv(4096).decode().strip()
            print(f"echo {got}", flush=True)
        except OSError:
            print("timeout", flush=True)
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve([int(p) for p in args])
    elif cmd == "connect":
        sys.exit(connect(args[0], int(args[1]), float(args[2])))
    elif cmd == "session":
        sys.exit(session(args[0], int(args[1])))
    sys.exit(f"unknown command {cmd}")
