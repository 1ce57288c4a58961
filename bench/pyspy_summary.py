"""Sum a py-spy profile of a daphne process by what the CPU was doing.

py-spy is not a Fluxo dependency: install it in a throwaway place (``pip install --target DIR
py-spy``), then, while bench/ingest.py drives the server,

    py-spy record --pid PID --rate 250 --duration 15 --format raw --output stacks.txt
    python bench/pyspy_summary.py stacks.txt

Each sample (a stack, on-CPU only: py-spy leaves idle threads out) goes to the innermost frame
that belongs to one of the groups below, so "psycopg" is the driver's own Python work (adapting
parameters, reading results), not the time PostgreSQL takes.
"""

import sys
from collections import Counter

# Innermost match wins; checked in this order for each frame, from the leaf up.
GROUPS = (
    ("psycopg/", "psycopg (driver, Python side)"),
    ("django/db/", "Django ORM and db wrapper"),
    ("streams/wire.py", "streams/wire.py (parse, normalise)"),
    ("streams/store.py", "streams/store.py (own code)"),
    ("streams/signatures.py", "streams/signatures.py"),
    ("cryptography/", "streams/signatures.py"),
    ("streams/announce.py", "streams/announce.py + redis"),
    ("redis/", "streams/announce.py + redis"),
    ("streams/auth.py", "streams/auth.py"),
    ("streams/", "streams (other)"),
    ("django/", "Django request handling"),
    ("asgiref/", "asgiref (sync view thread hand-off)"),
    ("channels/", "Django request handling"),
    ("daphne/", "daphne + Twisted (HTTP)"),
    ("twisted/", "daphne + Twisted (HTTP)"),
    ("asyncio/", "asyncio event loop"),
    ("concurrent/futures", "asgiref (sync view thread hand-off)"),
    ("threading.py", "asgiref (sync view thread hand-off)"),
)


def group_of(stack):
    frames = stack.split(";")
    for frame in reversed(frames):
        for marker, group in GROUPS:
            if marker in frame:
                return group
    return "other"


def summarise(lines):
    counts = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            counts[group_of(stack)] += int(count)
    return counts


def main(path):
    with open(path) as handle:
        counts = summarise(handle)
    total = sum(counts.values()) or 1
    print(f"{total} on-CPU samples")
    for group, n in counts.most_common():
        print(f"  {group:<40}{n / total * 100:>6.1f} %")


if __name__ == "__main__":
    main(sys.argv[1])
