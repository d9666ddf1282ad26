"""`kres tune --parallel`: trials side by side on one machine, one per GPU.

keras-tuner runs trials in parallel as a chief, which serves the oracle, and
workers, which train (its ``KERASTUNER_*`` variables; `kres tune --chief`
and ``--worker``). `run` starts them on this machine: the chief on a free
local port, seeing no GPU, then one worker per GPU, each seeing only its own
(``CUDA_VISIBLE_DEVICES``, which TensorFlow and JAX both honour; where it is
set already, its GPUs), or a number of workers sharing the machine (on a GPU
machine each then takes GPU memory as it needs it rather than all at once).
The chief's output is the command's; each worker writes to
``<search>/workers/<id>.log``. A worker that fails stops the
search (the others are ended, its log's end printed); Ctrl-C ends them all,
and so does the end of this process, even killed (on Linux); ``kres tune
--resume <search> --parallel ...`` continues.
"""

import os
import signal
import socket
import subprocess
import sys
import time

# How long the chief may take to serve its oracle (it loads the data first).
CHIEF_START_SECONDS = 600


def parse(value):
    """``--parallel``'s value: ``"gpus"`` or a number of workers (at least 1)."""
    if value == "gpus":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"--parallel takes a number of workers or 'gpus' (one per GPU). "
                     f"Received: --parallel {value}")


def gpus_seen():
    """The GPUs Keras's backend sees, counted in a child process (so that this one, the
    parent of the workers, never takes a GPU's memory)."""
    code = "from kres.training.devices import gpu_count; print(gpu_count())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"Counting the GPUs failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout.strip().splitlines()[-1])


def run(argv, out, parallel):
    """Runs a search as a chief and workers on this machine; returns when it ends.

    Args:
        argv: the ``kres tune`` arguments, ``--parallel`` among them (dropped
            for the children, which get ``--out``, ``--chief`` or ``--worker``).
        out: the search directory.
        parallel: `parse`'s value.

    Raises:
        ValueError: ``"gpus"`` where the backend sees none.
        RuntimeError: a process that failed, with its log's last lines.
    """
    if parallel == "gpus":
        count = gpus_seen()
        if count == 0:
            raise ValueError("--parallel gpus runs one trial per GPU, and Keras's backend sees "
                             "no GPU here: give a number of workers instead. Received: "
                             "--parallel gpus")
        devices = _gpu_ids(count)
    else:
        devices = [None] * parallel
    logs = os.path.join(out, "workers")
    os.makedirs(logs, exist_ok=True)
    command = [sys.executable, "-m", "kres.cli", *_without_parallel(argv), "--out", out]
    port = _free_port()
    where = (f"one per GPU ({', '.join(devices)})" if devices[0] is not None
             else "sharing this machine")
    print(f"kres tune: a chief on port {port} and {len(devices)} worker"
          f"{'s' * (len(devices) != 1)}, {where}; worker logs in {logs}", flush=True)
    # The chief serves the oracle and trains nothing: it sees no GPU.
    # Its oracle listens on this machine only (a --chief alone listens on every address).
    chief = subprocess.Popen([*command, "--chief", "--port", str(port)],
                             env={**os.environ, "CUDA_VISIBLE_DEVICES": "",
                                  "KERASTUNER_ORACLE_IP": "127.0.0.1"},
                             preexec_fn=_end_with_parent)
    workers = {}
    try:
        wait_for_port(port, chief)
        for i, device in enumerate(devices):
            name = f"tuner{i}"
            env = dict(os.environ)
            if device is not None:
                env["CUDA_VISIBLE_DEVICES"] = device
            else:  # workers sharing GPUs: each takes GPU memory as it needs it, not all
                env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
                env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
            with open(os.path.join(logs, f"{name}.log"), "w") as log:
                workers[name] = subprocess.Popen(
                    [*command, "--worker", name, "--oracle", f"127.0.0.1:{port}", "--quiet"],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=_end_with_parent)
        _wait(chief, workers, logs)
    finally:
        for process in [chief, *workers.values()]:
            if process.poll() is None:
                process.terminate()
        for process in [chief, *workers.values()]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait(chief, workers, logs):
    """Until every worker and then the chief end; a failure ends the search."""
    while True:
        for name, process in workers.items():
            if process.poll() not in (None, 0):
                raise RuntimeError(f"worker {name} failed (exit {process.returncode}); its log "
                                   f"{os.path.join(logs, name + '.log')} ends:\n"
                                   f"{_tail(os.path.join(logs, name + '.log'))}")
        if chief.poll() not in (None, 0):
            raise RuntimeError(f"the chief failed (exit {chief.returncode}; its output is "
                               f"above)")
        if all(p.poll() == 0 for p in workers.values()) and chief.poll() == 0:
            return
        time.sleep(0.5)


def _gpu_ids(count):
    """The `count` GPUs' ids for ``CUDA_VISIBLE_DEVICES``: those it already lists, if set
    (its entries are what this process sees), else 0 to count - 1."""
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
              if d.strip()]
    return listed[:count] if len(listed) >= count else [str(i) for i in range(count)]


def _end_with_parent():
    """In a child: be ended (SIGTERM) when the parent dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG); elsewhere nothing. The C function is found in the parent
    (`_prctl`): between fork and exec the child only calls it."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None).prctl


_PRCTL = _prctl()


def _tail(path, lines=15):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:]).rstrip()


def _without_parallel(argv):
    """`argv` without ``--parallel`` and its value, abbreviated (``--par 2``, as argparse
    takes it) or not."""
    out, skip = [], False
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif len(flag) > 2 and "--parallel".startswith(flag):
            skip = "=" not in arg
        else:
            out.append(arg)
    return out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=CHIEF_START_SECONDS):
    """Until something listens on local `port`; `process` (the chief, which will) must not
    end meanwhile.

    Raises:
        RuntimeError: `process` ended first, or `timeout` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the chief ended (exit {process.returncode}) before serving "
                               f"its oracle on port {port}; its output is above")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the chief did not serve its oracle on port {port} within "
                       f"{timeout} s")
