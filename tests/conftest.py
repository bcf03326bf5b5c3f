"""Fixtures: real Kafka and Redis (env, testcontainers or the local jar stack), per-test topics."""

from __future__ import annotations

import contextlib
import gc
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from streams.adapters.kafka_io import admin_client, ensure_topics
from streams.adapters.redis_client import connect_sync
from streams.bench.housekeeping import purge
from streams.bench.sandbox_process import SandboxProcess
from streams.bench.worker_process import WorkerProcess, free_port
from streams.settings import Settings
from streams.settings_env import settings_env
from tests.support import CI, REPO, unavailable


@dataclass(frozen=True)
class Services:
    """Where the real services answer."""

    kafka_bootstrap_servers: str
    redis_url: str
    origin: str


def docker_engine_answers() -> bool:
    """True when a Docker engine (not just the client) is reachable."""
    with warnings.catch_warnings():
        # docker-py leaves the socket of a failed connection open: collected here, not reported
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


@contextlib.contextmanager
def containers() -> Iterator[Services]:
    """Kafka and Redis in testcontainers (a laptop with Docker)."""
    try:  # testcontainers.kafka and .redis warn that they are deprecated where this exists
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.redis import RedisContainer
    except ImportError:  # releases before the move
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as kafka,
        RedisContainer("redis:7-alpine") as rds,
    ):
        url = f"redis://{rds.get_container_host_ip()}:{rds.get_exposed_port(6379)}/0"
        yield Services(kafka.get_bootstrap_server(), url, "testcontainers")


REDIS_CLUSTER = os.environ.get("REWARDS_TEST_REDIS", "single") == "cluster"
"""`REWARDS_TEST_REDIS=cluster`: the fixtures give a Redis Cluster (deploy/test.sh's second pass
runs the tests marked `redis` so)."""


def stack_env() -> dict[str, str]:
    """deploy/stack.sh's environment: in cluster mode a stack of its own (directory, Kafka port),
    so it never meets a developer's single-Redis stack."""
    if not REDIS_CLUSTER:
        return dict(os.environ)
    state = os.environ.get("XDG_STATE_HOME", str(Path.home() / ".local" / "state"))
    base = os.environ.get("REWARDS_STACK_DIR", f"{state}/rewards-stack")
    return {
        **os.environ,
        "REWARDS_STACK_DIR": f"{base}-redis-cluster",
        "REWARDS_KAFKA_PORT": str(int(os.environ.get("REWARDS_KAFKA_PORT", "19092")) + 100),
    }


@contextlib.contextmanager
def local_stack() -> Iterator[Services]:
    """The jar-based KRaft broker and redis-server (or Redis Cluster) from deploy/stack.sh."""
    script, env = str(REPO / "deploy" / "stack.sh"), stack_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", script, *args], env=env, capture_output=True, text=True, check=False
        )

    was_running = "running" in run("status").stdout
    up = run("up", *(["--redis-cluster"] if REDIS_CLUSTER else []))
    if up.returncode != 0:
        unavailable(f"deploy/stack.sh up failed:\n{up.stderr[-3000:]}")
    values = dict(
        line.removeprefix("export ").split("=", 1) for line in run("env").stdout.splitlines()
    )
    try:
        yield Services(values["KAFKA_BOOTSTRAP_SERVERS"], values["REDIS_URL"], "deploy/stack.sh")
    finally:
        if not was_running:
            run("down")


def check_reachable(services: Services) -> None:
    """Fail (CI) or skip when Kafka or Redis does not answer."""
    try:
        admin_client(services.kafka_bootstrap_servers).list_topics(timeout=20)
    except Exception as exc:
        unavailable(f"Kafka at {services.kafka_bootstrap_servers} unreachable: {exc}")
    try:
        connect_sync(services.redis_url, socket_connect_timeout=5).ping()
    except Exception as exc:
        unavailable(f"Redis at {services.redis_url} unreachable: {exc}")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """Explicit KAFKA_BOOTSTRAP_SERVERS / REDIS_URL win; else testcontainers; else local stack."""
    bootstrap, url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    with contextlib.ExitStack() as stack:
        if bootstrap and url:
            found = Services(bootstrap, url, "environment")
        elif not REDIS_CLUSTER and docker_engine_answers():
            found = stack.enter_context(containers())
        else:
            found = stack.enter_context(local_stack())
        check_reachable(found)
        yield found


@pytest.fixture(scope="session")
def sandbox_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """The gift-card provider sandbox on 127.0.0.1 for the whole session (a real HTTP server)."""
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with SandboxProcess(log_path=log) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(sandbox_service: SandboxProcess) -> Iterator[SandboxProcess]:
    """The sandbox with no orders and no faults; faults are cleared again afterwards."""
    sandbox_service.reset()
    yield sandbox_service
    sandbox_service.faults()


@pytest.fixture
def settings(
    services: Services, tmp_path: Path, sandbox_service: SandboxProcess
) -> Iterator[Settings]:
    """Topics, consumer group and Redis namespace unique to this test, removed afterwards."""
    run = uuid.uuid4().hex[:10]
    made = Settings(
        kafka_bootstrap_servers=services.kafka_bootstrap_servers,
        redis_url=services.redis_url,
        topic_prefix=f"t-{run}-",
        app_id=f"test-{run}",
        store="rocksdb://",
        data_dir=tmp_path / "data",
        web_port=free_port(),
        partitions=2,
        lag_interval_s=0.5,
        session_timeout_s=8.0,
        pii_hash_key=SecretStr(f"test-pii-hash-key-{run}"),
        gift_card_provider_url=sandbox_service.url,
        gift_card_api_key=SecretStr(sandbox_service.api_key),
        gift_card_timeout_s=2.0,
        gift_card_max_attempts=4,
        gift_card_backoff_initial_s=0.05,
        gift_card_backoff_max_s=0.5,
    )
    ensure_topics(made)
    yield made
    purge(made)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    """Start `rewards worker` subprocesses; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(
        settings: Settings, module: str = "streams.cli", ready_timeout_s: float = 90.0
    ) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(settings_env(settings), settings.web_port, log, module)
        started.append(worker)
        return worker.start(ready_timeout_s)

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, so it can be stopped and started again."""
    binary = shutil.which("redis-server")
    if binary is None:
        if CI:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    port = free_port()
    argv = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--dir",
        str(tmp_path),
    ]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        proc: subprocess.Popen[bytes] | None = None

        def start(self) -> None:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
            time.sleep(0.3)

        def stop(self) -> None:
            if self.proc:
                self.proc.terminate()
                self.proc.wait(10)

    server = Server()
    server.start()
    yield server
    server.stop()


def consecutive_free_ports(count: int) -> int:
    """A base port below the ephemeral range with `count` bindable ports from it on."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 30_000 - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A 3-broker KRaft cluster (RF 3, min.insync 2) on free ports, one per test module;
    yields (bootstrap servers, its stack directory)."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    if shutil.which("java") is None or shutil.which("mvn") is None:
        if CI:
            pytest.fail("java and mvn are needed for the jar-based cluster")
        pytest.skip("java and mvn are needed for the jar-based cluster")
    env = {
        **os.environ,
        "REWARDS_STACK_DIR": str(tmp_path / "stack"),
        "REWARDS_KAFKA_PORT": str(consecutive_free_ports(6)),
        "REWARDS_REDIS_PORT": str(free_port()),
    }
    script = str(REPO / "deploy" / "stack.sh")

    def run(*args: str) -> str:
        done = subprocess.run(
            ["bash", script, *args], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    run("up", "--brokers", "3")
    run("up", "--brokers", "3")  # safe to run twice
    exports = dict(line.removeprefix("export ").split("=", 1) for line in run("env").splitlines())
    yield exports["KAFKA_BOOTSTRAP_SERVERS"], tmp_path / "stack"
    run("down", "--purge")


@dataclass
class RedisClusterStack:
    """A Redis Cluster of this test module's own (`deploy/stack.sh up --redis-cluster
    --no-kafka`), so a test may kill its nodes."""

    directory: Path
    first_port: int

    def ports(self) -> range:
        """Every node's port."""
        return range(self.first_port, self.first_port + 6)

    @property
    def url(self) -> str:
        ports = self.ports()
        return f"redis+cluster://{','.join(f'127.0.0.1:{p}' for p in ports)}/0"

    def client(self) -> redis.RedisCluster:
        """A client that knows every node (whichever was killed, another answers)."""
        client = connect_sync(self.url, socket_timeout=1)
        assert isinstance(client, redis.RedisCluster)
        return client

    def primary_of(self, key: str) -> int:
        """The port of the primary that serves `key`'s hash slot."""
        with self.client() as client:
            node = client.get_node_from_key(key)
            assert node is not None
            return int(node.port)

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port` (no goodbye: its replica must notice and take over)."""
        pid = int((self.directory / "redis-cluster" / str(port) / "pid").read_text())
        os.kill(pid, 9)

    def healthy(self) -> bool:
        """Every slot served (`cluster_state:ok`), as a surviving node sees it."""
        for port in range(self.first_port, self.first_port + 6):
            try:
                with redis.Redis(port=port, socket_timeout=1) as node:
                    info = node.cluster("info")
            except redis.RedisError:
                continue
            return bool(info.get("cluster_state") == "ok")
        return False


@pytest.fixture(scope="module")
def private_redis_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A 3-primary, 3-replica Redis Cluster on free loopback ports for one test module."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable("redis-server and redis-cli are needed for a Redis Cluster")
    directory = tmp_path_factory.mktemp("redis-cluster")
    first = consecutive_free_ports(6)
    env = {**os.environ, "REWARDS_STACK_DIR": str(directory),
           "REWARDS_REDIS_CLUSTER_PORT": str(first)}  # fmt: skip
    script = str(REPO / "deploy" / "stack.sh")

    def run(*args: str) -> None:
        done = subprocess.run(
            ["bash", script, *args], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr[-4000:]

    run("up", "--redis-cluster", "--no-kafka")
    yield RedisClusterStack(directory, first)
    run("down", "--purge")
