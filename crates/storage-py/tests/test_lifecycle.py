"""Process and lifecycle edges: fork, interpreter exit.

Each scenario runs in a fresh interpreter (``subprocess.run`` with a timeout), so a hang
or a crash fails the test instead of hanging or killing pytest. See `src/runtime.rs` for
how the package meets both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# A run that takes longer than this is a hang.
TIMEOUT = 60

# The script each fork test runs: the parent uses a Storage (so the shared tokio runtime
# and, for SQLite, the backend's threads exist), forks, and the child runs CHILD_WORK with
# a watchdog. The child reports one line: "ok", "error <class>" (a typed error is an
# acceptable answer for a Storage inherited across the fork), or nothing when it hung and
# the watchdog killed it. The watchdog is SIGKILL from the forking parent, since a raising
# signal handler could not interrupt the hung call of the code before the fix.
FORK_SCRIPT = """
import asyncio, os, sys, tempfile, time
import agent_storage as st
from agent_storage import Storage

backend = {backend!r}
tmp = tempfile.mkdtemp()

def make(suffix):
    return Storage(
        {{"backend": backend, "object.url": f"file://{{tmp}}/store{{suffix}}",
          "sqlite.path": f"{{tmp}}/storage{{suffix}}.db"}},
        use_env=False,
    )

parent = make("")
async def use():
    await parent.initialize()
    await parent.create_session("p", "u")
asyncio.run(use())
parent.native.get_checkpoint_tuple("t", "", None, blocking=True)

read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    try:
{child_work}
        answer = "ok"
    except st.StorageError as err:
        answer = f"error {{type(err).__name__}}"
    except BaseException as err:  # anything else is a wrong answer, but an answer
        answer = f"other {{type(err).__name__}}: {{err}}"
    os.write(write, answer.encode())
    os._exit(0)
os.close(write)
deadline = time.monotonic() + {child_timeout}
while time.monotonic() < deadline:
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print("child:", os.read(read, 1000).decode() or "HUNG")
"""


def run_fork_scenario(backend: str, child_work: str, child_timeout: float = 10) -> str:
    script = FORK_SCRIPT.format(
        backend=backend,
        child_work=textwrap.indent(textwrap.dedent(child_work).strip(), " " * 8),
        child_timeout=child_timeout,
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- fork -------------------------------------------------------------------------------
# gunicorn --preload, celery prefork and multiprocessing's "fork" start method fork a
# process that has used a Storage. The child inherits the tokio runtime without its
# threads; every call that waited there waited forever (not even Ctrl-C ended it), on a
# Storage the child made as on one it inherited. The child now builds its own runtime, and
# an inherited Storage, whose connections and files are the parent's, is refused.


@pytest.mark.parametrize("backend", ["memory", "sqlite", "object"])
def test_fork_child_can_use_a_storage_it_creates(backend):
    outcome = run_fork_scenario(
        backend,
        """
        child = make("_child")
        async def go():
            await child.initialize()
            await child.create_session("c", "u")
            return await child.get_session("c")
        assert asyncio.run(go())["session_id"] == "c"
        child.native.save_artifact("s", "a", b"x", "text/plain", None, blocking=True)
        """,
    )
    assert outcome == "child: ok"


@pytest.mark.parametrize("backend", ["memory", "sqlite", "object"])
def test_fork_inherited_storage_async_call_in_child_is_refused(backend):
    outcome = run_fork_scenario(
        backend,
        """
        asyncio.run(parent.get_session("p"))
        """,
    )
    assert outcome == "child: error UnsupportedError", outcome


@pytest.mark.parametrize("backend", ["memory", "sqlite", "object"])
def test_fork_inherited_storage_call_in_child_is_refused(backend):
    """A sync (blocking=True) call, as LangGraph's sync StorageSaver methods make it: one
    whose first poll waits (a file operation on the blocking pool) hung before."""
    outcome = run_fork_scenario(
        backend,
        """
        parent.native.save_artifact("s", "a", b"x", "text/plain", None, blocking=True)
        """,
    )
    assert outcome == "child: error UnsupportedError", outcome


# --- interpreter exit ---------------------------------------------------------------------
# A tokio thread that attached to Python to hand an async call's result over while the
# interpreter finalized crashed the process: SIGSEGV, or SIGABRT with "Fatal Python error:
# PyGILState_Release: ... Python runtime state: finalizing". An atexit hook now lets no
# thread attach past it.

CANCELLED_AT_EXIT = """
import asyncio, sys, tempfile
from agent_storage import Storage
tmp = tempfile.mkdtemp()
store = Storage({{"backend": {backend!r}, "object.url": f"file://{{tmp}}/store",
                 "sqlite.path": f"{{tmp}}/storage.db"}}, use_env=False)
async def main():
    await store.initialize()
    for i in range(200):
        asyncio.ensure_future(store.create_session(f"s{{i}}", "u"))
    await asyncio.sleep(0)
asyncio.run(main())   # cancels the 200 pending tasks, then the script ends
"""

DAEMON_LOOP_AT_EXIT = """
import asyncio, threading, time
from agent_storage import Storage
store = Storage({"backend": "memory"}, use_env=False)
store.native.initialize(blocking=True)
def loop_thread():
    async def spin():
        while True:
            await asyncio.gather(*[store.get_session("x") for _ in range(10)])
    asyncio.run(spin())
threading.Thread(target=loop_thread, daemon=True).start()
time.sleep(0.1)   # the main thread ends with async calls in flight on the daemon loop
"""


def crashes(script: str, runs: int) -> list[str]:
    failures = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT
        )
        if done.returncode != 0:
            failures.append(f"exit {done.returncode}: {done.stderr.strip()[:200]}")
    return failures


@pytest.mark.parametrize("backend", ["sqlite", "object"])
def test_exit_after_asyncio_run_cancelled_native_calls_is_clean(backend):
    # A plain script whose pending tasks asyncio.run cancelled. About one run in five
    # crashed before the fix; 30 runs make a miss very unlikely.
    failures = crashes(CANCELLED_AT_EXIT.format(backend=backend), runs=30)
    assert failures == []


def test_exit_with_async_calls_in_flight_on_a_daemon_loop_is_clean():
    # An event loop in a daemon thread (sync-over-async bridges, background loops) awaiting
    # calls when the main thread ends: one run in four to seven crashed before the fix.
    failures = crashes(DAEMON_LOOP_AT_EXIT, runs=30)
    assert failures == []
