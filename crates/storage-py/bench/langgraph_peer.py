"""LangGraph's checkpointer workload through Python: this package's StorageSaver beside
LangGraph's own savers, on the same servers and disk, in one run, interleaved.

    cargo xtask bench python            # builds a release wheel into target/py-bench, runs this
    python crates/storage-py/bench/langgraph_peer.py --ops 2000 --concurrency 1,32

Workload (the issue's): 32 graph threads whose state is 10 channels of about 200 bytes
(about 2 KB); a step changes one channel. Phases of N operations: `put` (a checkpoint),
`put_writes` (one pending write), `get_tuple` (the latest checkpoint of a thread, values
decoded), `list10` (the newest 10 of a thread). One caller loops over the threads; 32
callers each own one graph thread (a graph thread never runs two steps at once). Each phase
runs in rounds that alternate ours and theirs, so both see the same machine noise.

Pairs:
- memory: StorageSaver on the in-memory backend vs LangGraph's InMemorySaver;
- embedded: StorageSaver on the embedded default (SQLite, synchronous=FULL, WAL) vs
  SqliteSaver on one file with WAL and synchronous=FULL (every commit fsynced, as ours);
- postgres: StorageSaver on PostgreSQL vs PostgresSaver (psycopg pool of 32), both on
  the server at --postgres-url (default: $BENCH_POSTGRES_URL, else the machine's
  postgres://postgres@127.0.0.1:5432/postgres), each in a database created for the run.

Ours runs with the facade's defaults; `--group-commit` turns its group commit on
(`group_commit.enabled`: concurrent puts of different graph threads stored as one batch,
each caller answered once its batch is durable), as a service with many callers would.

Printed per pair, phase and concurrency: ops/s and p50 of each side and ours/theirs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, Callable

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint

THREADS = 32
CHANNELS = 10
ROUNDS = 4


def value(channel: int, step: int) -> dict:
    return {"channel": channel, "step": step, "text": "x" * 160}


class Driver:
    """One saver's graph threads: their newest config and channel versions."""

    def __init__(self, name: str, saver: BaseCheckpointSaver) -> None:
        self.name = name
        self.saver = saver
        self.run = uuid.uuid4().hex[:8]
        self.last: dict[int, dict] = {}
        self.versions: dict[int, dict[str, Any]] = {}
        self.steps: dict[int, int] = {}
        self.tasks = itertools.count(1)  # next() is atomic under the GIL

    def config(self, thread: int) -> dict:
        return {"configurable": {"thread_id": f"{self.run}-t{thread}", "checkpoint_ns": ""}}

    def put(self, thread: int) -> None:
        step = self.steps.get(thread, 0)
        self.steps[thread] = step + 1
        versions = self.versions.setdefault(thread, {})
        changed = [f"ch{k}" for k in range(CHANNELS)] if not versions else [f"ch{step % CHANNELS}"]
        new_versions = {}
        for channel in changed:
            versions[channel] = self.saver.get_next_version(versions.get(channel), None)
            new_versions[channel] = versions[channel]
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {
            f"ch{k}": value(k, step) for k in range(CHANNELS)
        }
        checkpoint["channel_versions"] = dict(versions)
        parent = self.last.get(thread, self.config(thread))
        self.last[thread] = self.saver.put(
            parent, checkpoint, {"source": "loop", "step": step}, new_versions
        )

    def put_writes(self, thread: int) -> None:
        task = next(self.tasks)
        channel = task % CHANNELS
        self.saver.put_writes(
            self.last[thread], [(f"ch{channel}", value(channel, task))], f"task-{task}"
        )

    def get_tuple(self, thread: int) -> None:
        assert self.saver.get_tuple(self.config(thread)) is not None

    def list10(self, thread: int) -> None:
        assert len(list(self.saver.list(self.config(thread), limit=10))) > 0


def timed(driver: Driver, phase: str, ops: int, concurrency: int) -> tuple[float, list[float]]:
    """Runs `ops` calls of `phase`; returns the wall time and each call's latency."""
    call: Callable[[int], None] = getattr(driver, phase)

    def worker(threads: list[int], count: int) -> list[float]:
        latencies = []
        for i in range(count):
            thread = threads[i % len(threads)]
            start = time.perf_counter()
            call(thread)
            latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    if concurrency == 1:
        latencies = worker(list(range(THREADS)), ops)
    else:
        per = max(1, ops // concurrency)
        with ThreadPoolExecutor(concurrency) as pool:
            parts = pool.map(lambda w: worker([w % THREADS], per), range(concurrency))
            latencies = [x for part in parts for x in part]
    return time.perf_counter() - start, latencies


def returned_values(saver, tuples) -> list[tuple[str, bytes]]:
    """The typed bytes of every value the tuples carry, as the serializer writes them."""
    typed = []
    for tup in tuples:
        for value in tup.checkpoint["channel_values"].values():
            typed.append(saver.serde.dumps_typed(value))
        for _task, _channel, value in tup.pending_writes or []:
            typed.append(saver.serde.dumps_typed(value))
    return typed


def alternated(
    contenders: dict[str, Callable[[int], object]], rounds: int, ops: int
) -> dict[str, list[float]]:
    """Each contender's microseconds per call in each round: `ops` calls of each, on graph
    threads round-robin, one contender after another, the order reversed every other round
    so that each sees the same machine noise (for the floor benches beside this one)."""
    took: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(rounds):
        order = list(contenders.items())
        if round_ % 2:
            order.reverse()
        for name, call in order:
            started = time.perf_counter()
            for i in range(ops):
                call(i % THREADS)
            took[name].append((time.perf_counter() - started) / ops * 1e6)
    return took



def read_medians(
    read: str, values: float, contenders: dict[str, Callable[[int], object]], rounds: int,
    ops: int
) -> dict[str, float]:
    """Runs the read floor benches' contenders (`alternated`) and prints, then returns,
    each one's median microseconds per call."""
    took = alternated(contenders, rounds, ops)
    med = {name: statistics.median(micros) for name, micros in took.items()}
    print(f"{read}: {values:.1f} values per call; medians of {rounds} rounds of {ops}, "
          "us per call")
    for name, micros in med.items():
        print(f"  {name:16s} {micros:8.1f}")
    return med

def compare(label: str, ours: Driver, theirs: Driver, ops: int, concurrency: int) -> list[str]:
    lines = []
    for phase in ["put", "put_writes", "get_tuple", "list10"]:
        totals = {ours.name: [0.0, []], theirs.name: [0.0, []]}
        chunk = max(concurrency, ops // ROUNDS)
        for round_ in range(ROUNDS):
            order = (ours, theirs) if round_ % 2 == 0 else (theirs, ours)
            for driver in order:
                wall, latencies = timed(driver, phase, chunk, concurrency)
                totals[driver.name][0] += wall
                totals[driver.name][1].extend(latencies)
        (o_wall, o_lat), (t_wall, t_lat) = totals[ours.name], totals[theirs.name]
        o_rate, t_rate = len(o_lat) / o_wall, len(t_lat) / t_wall
        lines.append(
            f"{label:<9} c{concurrency:<3} {phase:<11} ours {o_rate:>9,.0f}/s "
            f"p50 {statistics.median(o_lat) * 1e3:7.3f} ms | {theirs.name:<14} "
            f"{t_rate:>9,.0f}/s p50 {statistics.median(t_lat) * 1e3:7.3f} ms | "
            f"ours/theirs {o_rate / t_rate:5.2f}x"
        )
        print(lines[-1], flush=True)
    return lines


def ours_saver(settings: dict) -> BaseCheckpointSaver:
    from agent_storage import Storage
    from agent_storage.langgraph import StorageSaver

    storage = Storage(settings, use_env=False)
    storage.native.initialize(blocking=True)
    return StorageSaver(storage)


def memory_pair(stack: ExitStack, tmp: str, settings: dict | None = None) -> tuple[Driver, Driver]:
    from langgraph.checkpoint.memory import InMemorySaver

    return (Driver("ours", ours_saver({"backend": "memory", **(settings or {})})),
            Driver("InMemorySaver", InMemorySaver()))


def embedded_pair(stack: ExitStack, tmp: str, settings: dict | None = None) -> tuple[Driver, Driver]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    ours = ours_saver({"backend": "sqlite", "sqlite.path": f"{tmp}/ours.db",
                       "object.url": f"file://{tmp}/objects", **(settings or {})})
    conn = sqlite3.connect(f"{tmp}/theirs.db", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    stack.callback(conn.close)
    theirs = SqliteSaver(conn)
    theirs.setup()
    return Driver("ours", ours), Driver("SqliteSaver", theirs)


def postgres_pair(
    stack: ExitStack, tmp: str, url: str, settings: dict | None = None
) -> tuple[Driver, Driver]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    base, _, _ = url.rpartition("/")
    names = {side: f"lgbench_{side}_{uuid.uuid4().hex[:8]}" for side in ("ours", "theirs")}
    with psycopg.connect(url, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    stack.callback(drop)
    ours = ours_saver({"backend": "postgres", "postgres.url": f"{base}/{names['ours']}",
                       **(settings or {})})
    stack.callback(lambda: ours.storage.native.close(blocking=True))
    pool = ConnectionPool(
        f"{base}/{names['theirs']}", min_size=4, max_size=THREADS, open=True,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    stack.callback(pool.close)
    theirs = PostgresSaver(pool)
    theirs.setup()
    return Driver("ours", ours), Driver("PostgresSaver", theirs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--pairs", default="memory,embedded,postgres")
    parser.add_argument(
        "--group-commit", action="store_true",
        help="ours with the facade's group commit on (group_commit.enabled; off by default)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    settings = {"group_commit.enabled": True} if args.group_commit else {}
    import agent_storage

    print(f"agent_storage {agent_storage.__version__} ({agent_storage._native.__file__}); "
          f"python {platform.python_version()}; {os.cpu_count()} cores; {args.ops} ops per "
          f"phase, {ROUNDS} interleaved rounds; ours with group commit "
          f"{'on' if args.group_commit else 'off (the default)'}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for pair in args.pairs.split(","):
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
                if pair == "memory":
                    ours, theirs = memory_pair(stack, tmp, settings)
                elif pair == "embedded":
                    ours, theirs = embedded_pair(stack, tmp, settings)
                elif pair == "postgres":
                    ours, theirs = postgres_pair(stack, tmp, args.postgres_url, settings)
                else:
                    parser.error(f"unknown pair {pair!r}")
                compare(pair, ours, theirs, args.ops, concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
