"""streams.groupcommit's Combiner alone, in a model of a web process's ingest threads (issue 15).

Threads stand for requests of one process: each spends CPU with the GIL held before it submits (the
request's parsing, checks and normalising) and after (its answer), and the statement sleeps (the GIL
is free while PostgreSQL works), a fixed time plus a time per job. No database, no HTTP: what the
way the combiner hands out its lead and wakes its waiters does to throughput, and nothing else.
Each tree given is measured in interleaved rounds; its own streams/groupcommit.py is loaded.

Run: python bench/combiner.py TREE [TREE ...] [--threads 8] [--before-ms 1.5] [--after-ms 0.5]
"""

import argparse
import importlib.util
import statistics
import threading
import time
from pathlib import Path


def load(tree, index):
    spec = importlib.util.spec_from_file_location(f"groupcommit_{index}", Path(tree) / "streams" / "groupcommit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def busy(seconds):
    """CPU with the GIL held, as Python code of a request would."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def measure(module, args):
    groups = []

    def run_many(jobs):
        groups.append(len(jobs))
        time.sleep((args.statement_ms + args.per_job_ms * len(jobs)) / 1000)
        return jobs

    combiner = module.Combiner(run_many, lambda job: job, max_jobs=16, max_size=400)

    def requests():
        for n in range(args.requests):
            busy(args.before_ms / 1000)
            combiner.submit(n, 1)
            busy(args.after_ms / 1000)

    threads = [threading.Thread(target=requests) for _ in range(args.threads)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs = args.threads * args.requests
    return jobs / (time.perf_counter() - started), statistics.mean(groups)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--threads", type=int, default=8, help="INGEST_THREADS")
    parser.add_argument("--requests", type=int, default=150, help="per thread and round")
    parser.add_argument("--before-ms", type=float, default=1.5)
    parser.add_argument("--after-ms", type=float, default=0.5)
    parser.add_argument("--statement-ms", type=float, default=2.0)
    parser.add_argument("--per-job-ms", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    modules = [load(tree, index) for index, tree in enumerate(args.trees)]
    found = [[] for _ in modules]
    for _ in range(args.rounds):
        for runs, module in zip(found, modules, strict=True):
            runs.append(measure(module, args))
    print(
        f"{args.threads} threads, {args.before_ms} + {args.after_ms} ms of CPU a request, statement "
        f"{args.statement_ms} ms + {args.per_job_ms} ms a job; medians of {args.rounds} rounds"
    )
    for tree, runs in zip(args.trees, found, strict=True):
        rate, group = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"  {tree}: {rate:,.0f} requests/s, {group:.1f} requests a statement")


if __name__ == "__main__":
    main()
