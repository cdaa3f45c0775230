"""What a read of the peer bench costs a saver whose values live outside the interpreter, as
this package's do, whatever its code, beside the whole
`get_tuple` and `list(limit=10)` of `InMemorySaver`, `SqliteSaver` and this package, in
alternating rounds of one process, on the peer bench's state (2,000 puts and 2,000
one-value `put_writes` over 32 graph threads):

- decode: the serializer's `loads_typed` of every value the read returns (each channel
  value of each checkpoint and each pending write), which LangGraph's API asks of a saver;
- build: `pickle.loads` of the objects this package's native call returns for the read
  (dicts, strings, the values as the `(type, bytes)` that `loads_typed` takes), as fast as
  CPython makes such objects;
- rows: `SqliteSaver`'s own statements for the read, fetched through Python's `sqlite3`
  (where its time goes; a saver laid out otherwise reads other rows, so not a floor);
- our statements: the statements our embedded backend runs for the read (its texts read
  from `crates/storage-sqlite/src/checkpoints.rs`), on a connection of their own to our
  database file, fetched through Python's `sqlite3`, which builds a Python object per row
  and value as our native call must; for list 10, without decoding the records or building
  the keys that the second and third statements take.

Such a saver cannot return what the read returns in less than decode + build
(`InMemorySaver`, whose bytes are in Python already, pays decode but not all of build); with
our embedded tables, not in less than our statements + decode. Twice a saver's rate needs
half its call.

    cargo xtask bench python            # builds the wheel and the venv in target/py-bench
    target/py-bench/bin/python crates/storage-py/bench/read_floor.py --rounds 9
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sqlite3
import sys
import tempfile
from contextlib import ExitStack
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import langgraph_peer  # noqa: E402
from langgraph.checkpoint.sqlite.utils import pending_writes_sql  # noqa: E402

THREADS = langgraph_peer.THREADS


def sqlite_rows(saver, thread_id: str, limit: int | None) -> None:
    """`SqliteSaver`'s statements, fetched: those of a `get_tuple` of the latest with no
    limit, else those of a `list(limit=...)` (each as its version of langgraph writes it,
    without the saver's lock around them)."""
    conn = saver.conn
    if limit is None:
        cur = conn.execute(
            "SELECT thread_id, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
            "metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
            "ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id, ""),
        )
        ids = [row[1] for row in cur.fetchall()]
    else:
        cur = conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
            "checkpoint, metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
            "ORDER BY checkpoint_id DESC LIMIT ?",
            (thread_id, "", limit),
        )
        ids = [row[2] for row in cur.fetchall()]
    for checkpoint_id in ids:
        conn.execute(
            pending_writes_sql(saver._has_task_path), (thread_id, "", checkpoint_id)
        ).fetchall()


class OurStatements:
    """Our embedded backend's read statements, run through Python's `sqlite3` on a
    connection of their own to our database file (WAL: they read beside the backend's).
    Their texts are read from `crates/storage-sqlite/src/checkpoints.rs`, so they are the
    very ones; `list`'s selection is built there in code, for a thread and a namespace, and
    is written out here."""

    def __init__(self, database: str) -> None:
        source = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "storage-sqlite", "src", "checkpoints.rs")).read()
        self.conn = sqlite3.connect(database, check_same_thread=False)
        (table,) = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%.checkpoints'"
        ).fetchone()
        prefix = table.removesuffix(".checkpoints")

        def constant(name: str) -> str:
            found = re.search(rf'const {name}: &str = "(.*?)";\n', source, re.S)
            assert found, f"the {name} statement moved: update read_floor.py"
            text = re.sub(r"\\\n\s*", "", found.group(1)).replace('\\"', '"')
            return text.replace("{ns}", prefix)

        self.get_sql = constant("GET").replace("{which}", "ORDER BY checkpoint_id DESC")
        self.blobs_sql = constant("BLOBS")
        self.writes_sql = constant("WRITES_OF")
        self.select_sql = (f'SELECT ns, checkpoint_id, record FROM "{prefix}.checkpoints" '
                           "WHERE thread_id = ?1 AND ns = ?2 ORDER BY checkpoint_id DESC, ns")
        # Per thread and limit, the JSON keys `fill` sends: made once, outside the timing.
        self.keys: dict[tuple[str, int], tuple[str, str]] = {}

    def get(self, thread_id: str) -> object:
        return self.conn.execute(self.get_sql, (thread_id, "")).fetchall()

    def list(self, thread_id: str, limit: int) -> None:
        """The three statements of a list: the selection, up to `limit` rows (as `list`
        stops stepping), then the values and the writes of what it selected. Decoding the
        records and building the keys is left out, so this is less than the read needs."""
        selected = self.conn.execute(self.select_sql, (thread_id, "")).fetchmany(limit)
        if (thread_id, limit) not in self.keys:
            keys: list[list[str]] = []
            for namespace, _, record in selected:
                versions = json.loads(record)["data"]["channel_versions"]
                for key in ([namespace, channel, version] for channel, version in versions.items()):
                    if key not in keys:
                        keys.append(key)
            ids = [[namespace, checkpoint_id] for namespace, checkpoint_id, _ in selected]
            self.keys[thread_id, limit] = (json.dumps(keys), json.dumps(ids))
        keys_json, ids_json = self.keys[thread_id, limit]
        self.conn.execute(self.blobs_sql, (thread_id, keys_json)).fetchall()
        self.conn.execute(self.writes_sql, (thread_id, ids_json)).fetchall()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops", type=int, default=500, help="reads per round and contender")
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        ours_memory, in_memory = langgraph_peer.memory_pair(stack, tmp)
        ours_embedded, sqlite_saver = langgraph_peer.embedded_pair(stack, tmp)
        drivers = {
            "ours (memory)": ours_memory,
            "InMemorySaver": in_memory,
            "ours (embedded)": ours_embedded,
            "SqliteSaver": sqlite_saver,
        }
        for driver in drivers.values():
            for i in range(2000):
                driver.put(i % THREADS)
            for i in range(2000):
                driver.put_writes(i % THREADS)
        native = ours_memory.saver._native
        ours_sql = OurStatements(f"{tmp}/ours.db")
        for phase, limit in (("get_tuple", None), ("list10", 10)):
            if phase == "get_tuple":
                read = lambda d, t: [d.saver.get_tuple(d.config(t))]  # noqa: E731
                stored = lambda t: native.get_checkpoint_tuple(  # noqa: E731
                    ours_memory.config(t)["configurable"]["thread_id"], "", None, blocking=True)
            else:
                read = lambda d, t: list(d.saver.list(d.config(t), limit=10))  # noqa: E731
                stored = lambda t: native.list_checkpoint_tuples(  # noqa: E731
                    ours_memory.config(t)["configurable"]["thread_id"], "", None, 10, None,
                    blocking=True)
            typed = [langgraph_peer.returned_values(in_memory.saver, read(in_memory, t)) for t in range(THREADS)]
            pickled = [pickle.dumps(stored(t), protocol=pickle.HIGHEST_PROTOCOL)
                       for t in range(THREADS)]
            loads = in_memory.saver.serde.loads_typed
            # Every name a contender uses is bound now, not looked up when it runs.
            contenders: dict[str, Callable[[int], object]] = {
                name: (lambda t, d=driver, read=read: read(d, t))
                for name, driver in drivers.items()
            }
            contenders["decode"] = lambda t, typed=typed: [loads(item) for item in typed[t]]
            contenders["build"] = lambda t, pickled=pickled: pickle.loads(pickled[t])
            contenders["rows"] = lambda t, limit=limit: sqlite_rows(
                sqlite_saver.saver, sqlite_saver.config(t)["configurable"]["thread_id"], limit)
            thread_ids = [ours_embedded.config(t)["configurable"]["thread_id"]
                          for t in range(THREADS)]
            if phase == "get_tuple":
                contenders["our statements"] = lambda t, ids=thread_ids: ours_sql.get(ids[t])
            else:
                for thread_id in thread_ids:
                    ours_sql.list(thread_id, limit)
                contenders["our statements"] = lambda t, ids=thread_ids, limit=limit: (
                    ours_sql.list(ids[t], limit))
            med = langgraph_peer.read_medians(
                phase, sum(map(len, typed)) / len(typed), contenders, args.rounds, args.ops)
            floor = med["decode"] + med["build"]
            for saver in ("InMemorySaver", "SqliteSaver"):
                print(f"  twice {saver}'s rate needs {med[saver] / 2:6.1f} us per call; "
                      f"decode + build take {floor:6.1f} ({floor / (med[saver] / 2):.2f}x of that)")
            if "our statements" in med:
                ours_floor = med["our statements"] + med["decode"]
                allows = med["SqliteSaver"] / 2
                print(f"  our statements + decode take {ours_floor:6.1f} "
                      f"({ours_floor / allows:.2f}x of what twice SqliteSaver's rate allows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
