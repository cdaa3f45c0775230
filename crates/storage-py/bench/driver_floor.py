"""What the peer bench's write phases cost before any saver runs: `langgraph_peer.Driver`'s
`put` and `put_writes` over a saver that does nothing (for a put the driver builds the
checkpoint: an empty one, a uuid6 id, ten value dicts, the versions; for a pending write
one value dict and a task id), beside `InMemorySaver` and this package on the in-memory
backend, in alternating rounds of one process; and over a saver that only serializes what it
would store (the config's keys read, each new value through `dumps_typed`), which any saver
keeping LangGraph's serialized values must do. Twice `InMemorySaver`'s rate is only reachable
if the driver alone, and the driver with that serialization, take less than half of its
loop.

    cargo xtask bench python            # builds the wheel and the venv in target/py-bench
    target/py-bench/bin/python crates/storage-py/bench/driver_floor.py --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import langgraph_peer  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402


class DoNothingSaver(InMemorySaver):
    """Answers a put with the config it would return, storing nothing."""

    def put(self, config, checkpoint, metadata, new_versions):  # type: ignore[override]
        return {"configurable": {**config["configurable"], "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config, writes, task_id, task_path=""):  # type: ignore[override]
        return None


class SerializeOnlySaver(DoNothingSaver):
    """Does what any saver that keeps LangGraph's serialized values must do before it
    stores anything: reads the config's keys and serializes each new value with the
    serializer (`dumps_typed`, as the issue asks), then drops them."""

    def put(self, config, checkpoint, metadata, new_versions):  # type: ignore[override]
        dumps = self.serde.dumps_typed
        values = checkpoint["channel_values"]
        [dumps(values[channel]) for channel in new_versions if channel in values]
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config, writes, task_id, task_path=""):  # type: ignore[override]
        c = config["configurable"]
        (c["thread_id"], c.get("checkpoint_ns", ""), c["checkpoint_id"])
        dumps = self.serde.dumps_typed
        [(channel, dumps(value)) for channel, value in writes]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ops", type=int, default=2000, help="calls per round, phase and driver")
    args = parser.parse_args()
    if args.ops < langgraph_peer.THREADS:
        # A pending write goes to a thread's latest checkpoint: every thread needs a put.
        parser.error(f"--ops must be at least {langgraph_peer.THREADS}")
    with ExitStack() as stack:
        ours, theirs = langgraph_peer.memory_pair(stack, stack.enter_context(tempfile.TemporaryDirectory()))
        drivers = {
            "driver alone (a saver that does nothing)": langgraph_peer.Driver("none", DoNothingSaver()),
            "driver + serialization only": langgraph_peer.Driver("serialize", SerializeOnlySaver()),
            "InMemorySaver": theirs,
            "StorageSaver (memory)": ours,
        }
        for phase in ("put", "put_writes"):
            took = langgraph_peer.alternated(
                {name: getattr(driver, phase) for name, driver in drivers.items()},
                args.rounds, args.ops)
            for name, micros in took.items():
                print(f"{phase:10s} {name:42s} median {statistics.median(micros):6.2f} us per call")
            alone = statistics.median(took["driver alone (a saver that does nothing)"])
            serialized = statistics.median(took["driver + serialization only"])
            theirs_loop = statistics.median(took["InMemorySaver"])
            print(
                f"{phase:10s} twice InMemorySaver's rate needs a loop of {theirs_loop / 2:.2f} us; "
                f"the driver alone takes {alone:.2f} us, with serialization {serialized:.2f} us "
                f"({serialized / (theirs_loop / 2):.2f}x of that)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
