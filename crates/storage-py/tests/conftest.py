"""Fixtures: a fresh Storage on each backend the package is built with."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

import agent_storage as st
from agent_storage import Storage

# The backends compiled into the default build (the facade's default features).
BACKENDS = ["memory", "object", "sqlite"]


def make_storage(backend: str, tmp_path) -> Storage:
    """A storage on `backend` alone: no environment, no storage.toml, the local directory
    and the SQLite file in a fresh temporary directory."""
    return Storage(
        {
            "backend": backend,
            "object.url": f"file://{tmp_path}/store",
            "sqlite.path": f"{tmp_path}/storage.db",
        },
        use_env=False,
    )


@pytest.fixture(params=BACKENDS)
async def storage(request, tmp_path):
    store = make_storage(request.param, tmp_path)
    await store.initialize()
    yield store
    await store.close()


# --- throwaway servers -------------------------------------------------------------------
# As the Rust testkit does: a STORAGE_TEST_*_URL names a running server, else each test
# session starts its own on a free loopback port. A missing server binary or backend feature
# is a skip with its reason, never a pass.


SERVER_BACKENDS = ["redis", "postgres"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    given = os.environ.get("STORAGE_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no STORAGE_TEST_REDIS_URL and no redis-server on PATH")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _postgres_bindir() -> str | None:
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for bindir in candidates:
        if os.path.isfile(os.path.join(bindir, "initdb")) and os.path.isfile(
            os.path.join(bindir, "pg_ctl")
        ):
            return bindir
    return None


@pytest.fixture(scope="session")
def postgres_url():
    given = os.environ.get("STORAGE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("no STORAGE_TEST_POSTGRES_URL and no PostgreSQL server binaries "
                    "(initdb, pg_ctl; Debian package postgresql)")
    # initdb refuses to run as root: as root the tools run as the postgres system user,
    # in a directory (not under pytest's root-only tmp) handed to that user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = tempfile.mkdtemp(prefix="agent-storage-pg-")
    if as_user:
        shutil.chown(base, "postgres", "postgres")
    data, port = os.path.join(base, "data"), free_port()
    run = lambda *args: subprocess.run([*as_user, *args], check=True,  # noqa: E731
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run(os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-o", options, "-w", "-t", "30",
            "-l", os.path.join(base, "log"), "start")
    except subprocess.CalledProcessError as err:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {err.stderr.decode(errors='replace')}")
    try:
        assert _accepts(port)
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, os.path.join(bindir, "pg_ctl"), "-D", data, "-m",
                        "immediate", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


def server_settings(backend: str, url: str) -> dict:
    """Settings for `backend` at `url`, in a namespace of its own: two namespaces never see
    each other's data."""
    namespace = f"py{uuid.uuid4().hex[:12]}"
    return {"backend": backend, f"{backend}.url": url, f"{backend}.namespace": namespace}


def server_storage(request, backend: str) -> Storage:
    """A storage on the server backend, skipping when this build lacks its feature."""
    url = request.getfixturevalue(f"{backend}_url")
    try:
        return Storage(server_settings(backend, url), use_env=False)
    except st.StorageConfigError as err:
        pytest.skip(f"this build has no {backend} backend (build with --features {backend}): {err}")
