"""Run N daphne processes on one listening address: ``python -m fluxo.serve --workers N --bind HOST:PORT``.

One daphne process runs its Python on one core. To use every core without a proxy in front, this
launcher binds the address itself and hands each daphne process a listening socket (``daphne --fd``,
run as ``python -m fluxo.daphne_main``, which refuses bodies over ``FLUXO_MAX_BODY_BYTES`` unread).
By default every process gets its own socket bound with SO_REUSEPORT, so the kernel spreads new
connections evenly over the processes; a single shared socket (``--balance shared``) lets whichever
process accepts first take a burst of connections, which with keep-alive senders can pin them all on
one process. A worker that dies is restarted; SIGTERM or SIGINT stops them all.

Arguments after ``--`` go to every daphne process unchanged (e.g. ``-- --verbosity 2``), except
``--proxy-headers``, which would believe anyone's ``X-Forwarded-For``: ``FLUXO_TRUSTED_PROXIES`` decides
which proxy is believed (fluxo/proxies.py).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

DEFAULT_APPLICATION = "fluxo.asgi:application"
RESTART_PAUSE = 1.0
STOP_GRACE_SECONDS = 10.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fluxo.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="daphne processes (default: cores)")
    parser.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT to listen on")
    parser.add_argument("--balance", choices=("reuseport", "shared"), default="reuseport")
    parser.add_argument("--application", default=DEFAULT_APPLICATION)
    parser.add_argument("daphne_args", nargs="*", help="passed to daphne (after --)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if "--proxy-headers" in args.daphne_args:
        parser.error("--proxy-headers believes any client's X-Forwarded-For: set FLUXO_TRUSTED_PROXIES instead")
    host, _, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--bind must be HOST:PORT, not {args.bind!r}")
    args.host, args.port = host.strip("[]"), int(port)
    return args


def listening_socket(host, port, reuseport):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def sockets_for(args):
    """One socket per worker (SO_REUSEPORT), or one socket that every worker shares."""
    if args.balance == "shared":
        shared = listening_socket(args.host, args.port, reuseport=False)
        return [shared] * args.workers
    first = listening_socket(args.host, args.port, reuseport=True)
    # Port 0 asks for a free port: the others must then join the one the first one got.
    port = first.getsockname()[1]
    return [first] + [listening_socket(args.host, port, reuseport=True) for _ in range(args.workers - 1)]


# Daphne's own access log writes whole URLs, query strings (which can carry a token) included: off
# unless asked for (``-- -v 1``, which comes later and wins). Fluxo logs each request (fluxo.logs).
QUIET = ("-v", "0")


def spawn(sock, args):
    # fluxo.daphne_main is daphne's command line with request bodies capped before they are read.
    command = [sys.executable, "-m", "fluxo.daphne_main", "--fd", str(sock.fileno()), *QUIET, *args.daphne_args]
    command.append(args.application)
    return subprocess.Popen(command, pass_fds=(sock.fileno(),))  # noqa: S603 (our own interpreter and arguments)


class Supervisor:
    """Keeps one daphne process per socket running until told to stop."""

    def __init__(self, sockets, args):
        self.sockets, self.args = sockets, args
        self.children = {}
        self.stopping = False

    def start(self):
        for index, sock in enumerate(self.sockets):
            self.children[index] = spawn(sock, self.args)

    def stop(self, signum=signal.SIGTERM, _frame=None):
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signum)

    def run(self):
        """Restart any worker that exits, until stop(); then wait for all of them (killing laggards)."""
        while not self.stopping:
            for index, child in list(self.children.items()):
                if child.poll() is not None and not self.stopping:
                    print(f"fluxo.serve: worker {child.pid} exited ({child.returncode}); restarting", file=sys.stderr)
                    time.sleep(RESTART_PAUSE)
                    self.children[index] = spawn(self.sockets[index], self.args)
            time.sleep(0.2)
        self._wait_all()

    def _wait_all(self):
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main(argv=None):
    args = parse_args(argv)
    sockets = sockets_for(args)
    host, port = sockets[0].getsockname()[:2]
    print(f"fluxo.serve: {args.workers} daphne process(es) on {host}:{port} ({args.balance})", file=sys.stderr)
    supervisor = Supervisor(sockets, args)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    supervisor.start()
    supervisor.run()


if __name__ == "__main__":
    main()
