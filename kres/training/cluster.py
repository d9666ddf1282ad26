"""The machines of a multi-worker run: read from `TF_CONFIG` or Slurm, checked first.

A multi-worker run (`kres train --strategy multi-worker`) is one process per
machine, each started with the same command and a `TF_CONFIG` naming every
worker and its own place among them:

    TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                "task": {"type": "worker", "index": 0}}'

Inside a Slurm job step without `TF_CONFIG`, the cluster comes from Slurm's
variables (the step's node list and tasks per node; each task placed by
its node and local id), ports from 12345 on each node.

`from_environment` checks the whole description, naming the field that is
wrong, before TensorFlow starts its server; `make_strategy` then creates the
`tf.distribute.MultiWorkerMirroredStrategy` and waits at most `timeout`
seconds for the other workers, naming the addresses that did not answer.
"""

import dataclasses
import json
import os
import re
import sys

from kres import checks

JOBS = ("chief", "worker")
DEFAULT_TIMEOUT = 300.0
DEFAULT_PORT = 12345


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Every worker's address and this process's task.

    Attributes:
        jobs: ``{"chief": (address,), "worker": (address, ...)}`` (the chief
            job is optional).
        task_type: ``"chief"`` or ``"worker"``.
        task_index: this task's index in its job.
        source: where the description came from (``"TF_CONFIG"``, ``"Slurm"``).
    """

    jobs: dict
    task_type: str
    task_index: int
    source: str = "TF_CONFIG"

    @property
    def addresses(self):
        """All tasks' addresses, chief first: the order of the workers' ranks."""
        return tuple(a for job in JOBS for a in self.jobs.get(job, ()))

    @property
    def rank(self):
        """This task's place in `addresses` (0 is the chief)."""
        offset = len(self.jobs.get("chief", ())) if self.task_type == "worker" else 0
        return offset + self.task_index

    @property
    def address(self):
        return self.addresses[self.rank]

    @property
    def num_workers(self):
        return len(self.addresses)

    @property
    def is_chief(self):
        """The task that writes the run directory: the chief, else worker 0."""
        return self.rank == 0

    def tf_config(self):
        """The description as a `TF_CONFIG` JSON string."""
        return json.dumps({"cluster": {job: list(a) for job, a in self.jobs.items()},
                           "task": {"type": self.task_type, "index": self.task_index}})


def _fail(field, value, requirement):
    raise ValueError(f"TF_CONFIG {field} {requirement}. Received: {field}={value!r}")


def _address(field, value):
    if not isinstance(value, str) or value.count(":") != 1 and not value.startswith("["):
        _fail(field, value, "must be a 'host:port' string")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(field, value, "must be a 'host:port' string with a port from 1 to 65535")
    return value


def parse_tf_config(text):
    """A `Cluster` from the text of `TF_CONFIG`, every field checked.

    Raises:
        ValueError: naming the field: text that is not JSON, a missing or
            malformed ``cluster`` or ``task``, a job kres does not run
            (``ps``, ``evaluator``), an address that is not ``host:port``,
            the same address twice, a task index out of range.
    """
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}). "
                         f"Received: TF_CONFIG={text!r}") from None
    if not isinstance(config, dict):
        _fail("TF_CONFIG", config, "must be a JSON object with 'cluster' and 'task'")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        _fail("['cluster']", cluster, "must be an object of jobs, e.g. "
              "{'worker': ['host1:12345', 'host2:12345']}")
    for job, addresses in cluster.items():
        if job not in JOBS:
            _fail("['cluster']", sorted(cluster), f"may hold only the jobs {list(JOBS)} "
                  f"(MultiWorkerMirroredStrategy; '{job}' belongs to other strategies)")
        if not isinstance(addresses, list) or not addresses:
            _fail(f"['cluster'][{job!r}]", addresses, "must be a non-empty list of addresses")
        for i, address in enumerate(addresses):
            _address(f"['cluster'][{job!r}][{i}]", address)
    if len(cluster.get("chief", [])) > 1:
        _fail("['cluster']['chief']", cluster["chief"], "must hold one address")
    every = [a for job in JOBS for a in cluster.get(job, [])]
    repeated = sorted({a for a in every if every.count(a) > 1})
    if repeated:
        _fail("['cluster']", cluster, f"names {repeated[0]} twice: each task needs a port of "
              "its own")
    if not isinstance(task, dict):
        _fail("['task']", task, "must be an object like {'type': 'worker', 'index': 0}")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        _fail("['task']['type']", task_type, f"must be one of the cluster's jobs {sorted(cluster)}")
    size = len(cluster[task_type])
    if not checks.is_int(index) or not 0 <= index < size:
        _fail("['task']['index']", index, f"must be an integer from 0 to {size - 1} (the "
              f"'{task_type}' job has {size} task{'s' * (size > 1)})")
    jobs = {job: tuple(cluster[job]) for job in JOBS if job in cluster}
    return Cluster(jobs, task_type, int(index))


def from_environment(environ=None, port=DEFAULT_PORT):
    """The cluster of this process: `TF_CONFIG`, else the Slurm job it runs in.

    Raises:
        ValueError: without either, or for a malformed description.
    """
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG", "").strip():
        return parse_tf_config(environ["TF_CONFIG"])
    if "SLURM_JOB_ID" in environ and "SLURM_PROCID" in environ:
        return _from_slurm(environ, port)
    raise ValueError(
        "strategy='multi-worker' needs the cluster in TF_CONFIG (or a Slurm job): "
        "'{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
        "\"task\": {\"type\": \"worker\", \"index\": 0}}' on each machine, its own index "
        "in each (docs/training.md). Received: TF_CONFIG unset"
    )


def _slurm(environ, name, fallback=None):
    for key in (name, fallback):
        if key and environ.get(key, "").strip():
            return environ[key].strip()
    raise ValueError(f"A Slurm job without {name}: start the workers with srun (one task "
                     f"per worker), or set TF_CONFIG. Received: {name} unset")


def _slurm_index(environ, name, count):
    value = _slurm(environ, name)
    if not value.isdigit() or int(value) >= count:
        raise ValueError(f"{name} must be an integer from 0 to {count - 1}. "
                         f"Received: {name}={value!r}")
    return int(value)


def expand_hostlist(text):
    """Slurm's compressed host list in its order: ``"n[9-10],gpu[07,09]"`` ->
    ``["n9", "n10", "gpu07", "gpu09"]`` (zero padding kept, several bracket
    groups in one name expanded left to right)."""
    names, depth, start = [], 0, 0
    for i, c in enumerate(text + ","):
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            if text[start:i]:
                names.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"SLURM node list has an unclosed '['. Received: {text!r}")
    return [host for name in names for host in _expand_name(name, text)]


def _expand_name(name, text):
    match = re.match(r"([^\[]*)\[([^\]]*)\](.*)", name)
    if not match:
        return [name]
    prefix, ranges, rest = match.groups()
    tails = _expand_name(rest, text)
    hosts = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or not (high or low).isdigit():
            raise ValueError(f"SLURM node list range {part!r} is not N or N-M. Received: {text!r}")
        hosts += [prefix + str(number).zfill(len(low)) + tail
                  for number in range(int(low), int(high or low) + 1) for tail in tails]
    return hosts


def expand_tasks_per_node(text):
    """Slurm's tasks per node: ``"2(x3),1"`` -> ``[2, 2, 2, 1]``."""
    counts = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not match:
            raise ValueError(f"SLURM tasks per node must look like '2(x3),1'. Received: {text!r}")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _from_slurm(environ, port):
    """The cluster of a Slurm job step: its nodes in Slurm's order, tasks on
    consecutive ports from `port`, this task placed by its node and local id.

    (TensorFlow's `SlurmClusterResolver` runs nvidia-smi, absent on CPU nodes,
    and orders the hosts alphabetically, n10 before n9, while ranks follow
    Slurm's order; each task here takes its place from SLURM_NODEID and
    SLURM_LOCALID, whatever the distribution of ranks.)
    """
    nodes = expand_hostlist(_slurm(environ, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"))
    tasks = expand_tasks_per_node(_slurm(environ, "SLURM_STEP_TASKS_PER_NODE",
                                         "SLURM_TASKS_PER_NODE"))
    if len(tasks) != len(nodes):
        raise ValueError(f"SLURM tasks per node name {len(tasks)} nodes, the node list "
                         f"{len(nodes)}. Received: {nodes}, {tasks}")
    node = _slurm_index(environ, "SLURM_NODEID", len(nodes))
    local = _slurm_index(environ, "SLURM_LOCALID", tasks[node])
    addresses = [f"{host}:{port + i}" for host, n in zip(nodes, tasks) for i in range(n)]
    index = sum(tasks[:node]) + local
    text = json.dumps({"cluster": {"worker": addresses},
                       "task": {"type": "worker", "index": index}})
    return dataclasses.replace(parse_tf_config(text), source="Slurm")


# Run in a process of its own: while TensorFlow waits for the cluster it holds
# Python's lock, so no thread of the waiting process could act.
_WATCHDOG = """
import os, signal, socket, sys, time
parent, timeout, rank, address, others = sys.argv[1:6]
time.sleep(float(timeout))
if os.getppid() != int(parent):
    sys.exit(0)
missing = []
for other in others.split(","):
    host, _, port = other.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
    except OSError:
        missing.append(other)
sys.stderr.write(
    f"\\nkres: worker {rank} ({address}) could not reach the other workers within "
    f"{float(timeout):g} s (the cluster timeout); no answer from {', '.join(missing or [others])}. "
    "Start every worker with the same cluster and check that these addresses are "
    "reachable from here.\\n")
sys.stderr.flush()
os.kill(int(parent), signal.SIGTERM)
time.sleep(3)  # TensorFlow may hold the process in a wait that ignores SIGTERM
if os.getppid() == int(parent):
    os.kill(int(parent), signal.SIGKILL)
"""


def make_strategy(cluster, timeout=DEFAULT_TIMEOUT):
    """`tf.distribute.MultiWorkerMirroredStrategy` over `cluster`, once every worker is up.

    Call it before any other TensorFlow work in the process. It sets the
    process's ``TF_CONFIG`` environment variable from `cluster`, for good
    (TensorFlow reads its cluster there, and a multi-worker strategy cannot be
    undone in a process). TensorFlow itself waits
    for the other workers without a limit; here, if the strategy and a first
    all-reduce among all workers are not done within `timeout` seconds, a
    watchdog process prints which addresses did not answer and terminates
    this one (a worker of a job: nothing else in it could go on).
    """
    import subprocess

    import tensorflow as tf

    checks.number("timeout", timeout, low=0, low_open=True)
    os.environ["TF_CONFIG"] = cluster.tf_config()
    others = ",".join(a for a in cluster.addresses if a != cluster.address)
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()),
                                 str(timeout), str(cluster.rank), cluster.address, others])
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()

        @tf.function
        def barrier():
            return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
                "SUM", tf.ones([])))

        barrier()
    finally:
        watchdog.kill()
        watchdog.wait()
    return strategy
