"""The CPU of handing a request from the event loop to a thread and back, as fluxo.asgi's ingest route does.

    python bench/handoff.py [--calls 20000] [--rounds 3]

Eight coroutines hand a function that does nothing to a pool of eight threads (the ingest route's
INGEST_THREADS) and await it, ``--calls`` times in all, in two ways: asgiref's ``sync_to_async`` with
that pool (the route before the sixth round) and ``loop.run_in_executor`` in a copy of the context
(the route now), each on asyncio's own event loop and on uvloop's. Prints the process's CPU and the
wall time per hand-off for each round. uvloop is a dev requirement (bench/ingest.py --server uvicorn).
"""

import argparse
import asyncio
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor

import uvloop
from asgiref.sync import sync_to_async

CONCURRENCY = 8


def nothing(value):
    return value


def hand_off(kind, loop, threads):
    if kind == "sync_to_async":
        return sync_to_async(nothing, thread_sensitive=False, executor=threads)

    def in_thread(value):
        return loop.run_in_executor(threads, contextvars.copy_context().run, nothing, value)

    return in_thread


async def measure(kind, calls):
    """(CPU µs, wall µs) per hand-off."""
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as threads:
        call = hand_off(kind, asyncio.get_running_loop(), threads)

        async def sender():
            for value in range(calls // CONCURRENCY):
                await call(value)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
        return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runners = {"asyncio": asyncio.run, "uvloop": uvloop.run}
    for _ in range(args.rounds):
        for loop_name, run in runners.items():
            for kind in ("sync_to_async", "run_in_executor"):
                cpu, wall = run(measure(kind, args.calls))
                print(f"{loop_name:8} {kind:16} CPU {cpu:6.1f} µs   wall {wall:6.1f} µs per hand-off", flush=True)


if __name__ == "__main__":
    main()
