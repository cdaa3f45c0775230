"""Where a one-caller PostgreSQL read of the peer bench goes (`get_tuple` of the latest, and
list 10), in alternating rounds of one process, on the peer bench's state (2,000 puts and
2,000 one-value `put_writes` over 32 graph threads, in a database of each saver's own on the
same server). For each read:

- ours and `PostgresSaver`: the whole call;
- native: this package's native call alone (the statement, and the objects it returns),
  without the saver's conversion to LangGraph's tuples;
- our statement: the very statement our native call sends (read from `pg_stat_activity`),
  prepared and fetched in binary, as we fetch it, through psycopg;
- decode: the serializer's `loads_typed` of every value the read returns, which LangGraph's
  API asks of any saver;
- a trivial statement through each: `SELECT 1` through psycopg, and a lookup of a missing
  artifact through the native call (one round trip, one index probe).

With this package's tables, a read cannot take less than our statement and decode; three
times `PostgresSaver`'s rate needs a third of its call.

    cargo xtask bench python            # builds the wheel and the venv in target/py-bench
    target/py-bench/bin/python crates/storage-py/bench/pg_read_floor.py --rounds 9
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import langgraph_peer  # noqa: E402

THREADS = langgraph_peer.THREADS


#: Per read (the peer bench's call of that name), how its statement differs from the other
#: read's: a get of one checkpoint skips the DISTINCT that merges the values a page shares.
DISTINCT = {"get_tuple": "NOT LIKE", "list10": "LIKE"}


def our_statement(url: str, ours: langgraph_peer.Driver, read: str):
    """Our statement for `read` as one of our connections last sent it, and a psycopg
    connection to our database to run it on, with psycopg's placeholders and our
    parameters' order (thread, namespace, limit)."""
    import psycopg

    getattr(ours, read)(0)
    with psycopg.connect(url, autocommit=True) as admin:
        database, text = admin.execute(
            "SELECT datname, query FROM pg_stat_activity "
            "WHERE datname LIKE 'lgbench_ours_%' AND query LIKE 'WITH c AS%' "
            f"AND query {DISTINCT[read]} '%SELECT DISTINCT%' LIMIT 1"
        ).fetchone()
    conn = psycopg.connect(f"{url.rpartition('/')[0]}/{database}", autocommit=True)
    schema = conn.execute(
        "SELECT schemaname FROM pg_tables WHERE tablename = 'checkpoints'"
    ).fetchone()[0]
    conn.execute(f'SET search_path TO "{schema}"')
    order = [int(n) for n in re.findall(r"\$(\d+)", text)]
    return conn, re.sub(r"\$\d+", "%s", text.replace("%", "%%")), order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=300, help="calls per round and contender")
    parser.add_argument("--reads", default="get_tuple,list10", help="get_tuple, list10 or both")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        ours, theirs = langgraph_peer.postgres_pair(stack, tmp, args.postgres_url)
        for driver in (ours, theirs):
            for i in range(2000):
                driver.put(i % THREADS)
            for i in range(2000):
                driver.put_writes(i % THREADS)
        native = ours.saver._native
        thread_ids = [ours.config(t)["configurable"]["thread_id"] for t in range(THREADS)]
        loads = theirs.saver.serde.loads_typed
        natives = {
            "get_tuple": lambda t: native.get_checkpoint_tuple(
                thread_ids[t], "", None, blocking=True),
            "list10": lambda t: native.list_checkpoint_tuples(
                thread_ids[t], "", None, 10, blocking=True),
        }
        for read in args.reads.split(","):
            conn, statement, order = our_statement(args.postgres_url, ours, read)
            stack.callback(conn.close)
            limit = 1 if read == "get_tuple" else 10
            returned = [list(theirs.saver.list(theirs.config(t), limit=limit))
                        for t in range(THREADS)]
            typed = [langgraph_peer.returned_values(theirs.saver, tuples) for tuples in returned]

            def statement_of(t: int, conn=conn, statement=statement, order=order,
                             limit=limit) -> None:
                params = {1: thread_ids[t], 2: "", 3: limit}
                with conn.cursor(binary=True) as cur:
                    cur.execute(statement, [params[n] for n in order], prepare=True)
                    cur.fetchall()

            contenders = {
                "ours": getattr(ours, read),
                "PostgresSaver": getattr(theirs, read),
                "native": natives[read],
                "our statement": statement_of,
                "decode": lambda t, typed=typed: [loads(item) for item in typed[t]],
                "SELECT 1": lambda t, conn=conn: conn.execute("SELECT 1").fetchone(),
                "native trivial": lambda t: native.artifact_exists(
                    "bench", f"missing-{t}", None, blocking=True),
            }
            med = langgraph_peer.read_medians(
                read, sum(map(len, typed)) / len(typed), contenders, args.rounds, args.ops)
            floor = med["our statement"] + med["decode"]
            allows = med["PostgresSaver"] / 3
            print(f"  three times PostgresSaver's rate needs {allows:6.1f} us per call; our "
                  f"statement + decode take {floor:6.1f} ({floor / allows:.2f}x of that)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
