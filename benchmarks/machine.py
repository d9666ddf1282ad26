"""What the benchmarks print about the machine and the Keras backend they ran on.

Imported by the scripts beside it (``python benchmarks/<script>.py`` puts this
folder on the import path).
"""

import os
import re
import shlex
import subprocess
import sys
import time


def _cpuinfo(field):
    """The first value of `field` in /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(rf"^{field}\s*:\s*(.*)$", f.read(), re.M)
    except OSError:
        return None
    return match.group(1).strip() if match else None


def _flags():
    return set((_cpuinfo("flags") or "").split())


def cpu_peak():
    """(fp32 FLOP/s, how it was derived) for this machine's CPU; (None, why) if unknown."""
    cores = len(os.sched_getaffinity(0))
    flags, mhz = _flags(), _cpuinfo("cpu MHz")
    if not (flags and mhz):
        return None, "no flags or clock in /proc/cpuinfo"
    mhz = float(mhz)
    if "avx512f" in flags:
        per_cycle, unit = 64, "AVX-512 FMA: 2 units x 16 floats x 2"
    elif {"avx2", "fma"} <= flags:
        per_cycle, unit = 32, "AVX2 FMA: 2 units x 8 floats x 2"
    elif "avx" in flags:
        per_cycle, unit = 16, "AVX: 8-float add + multiply"
    else:
        per_cycle, unit = 8, "SSE: 4-float add + multiply"
    peak = cores * per_cycle * mhz * 1e6
    return peak, (f"{cores} cores x {per_cycle} FLOP/cycle ({unit}) x {mhz / 1000:.2f} GHz "
                  f"(/proc/cpuinfo's current clock) = {peak / 1e9:.0f} GFLOP/s")


def cpu_name():
    """The CPU's model name and its vector extensions, from /proc/cpuinfo."""
    flags = _flags()
    extensions = [label for flag, label in (("avx2", "AVX2"), ("fma", "FMA"),
                                            ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"),
                                            ("avx512_bf16", "AVX512-BF16"),
                                            ("amx_tile", "AMX")) if flag in flags]
    return (f"{_cpuinfo('model name') or 'unknown CPU'}, "
            f"{len(os.sched_getaffinity(0))} CPUs, {' '.join(extensions) or 'no AVX2'}")


def onednn_state():
    """Whether TensorFlow's oneDNN optimisations are on in this process, and why."""
    from tensorflow.python.util import _pywrap_util_port

    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    source = f"TF_ENABLE_ONEDNN_OPTS={setting}" if setting is not None else (
        "TF_ENABLE_ONEDNN_OPTS unset: TensorFlow's default for this CPU")
    return f"oneDNN {'on' if _pywrap_util_port.IsMklEnabled() else 'off'} ({source})"


def gpu_name():
    """The GPUs as ``nvidia-smi`` names them (with memory and driver), or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return "; ".join(out.splitlines()) or None


def describe(tf=None):
    """One line: the Keras backend's version (oneDNN for TensorFlow), the CPU and the devices."""
    gpu = gpu_name()
    gpu = f"; GPU {gpu}" if gpu else ""
    if tf is not None:
        devices = [d.name for d in tf.config.list_logical_devices()]
        return (f"TensorFlow {tf.__version__}, {onednn_state()}; {cpu_name()}{gpu}; "
                f"devices {devices}")
    import keras

    backend = keras.backend.backend()
    module = __import__(backend)
    devices = module.devices() if backend == "jax" else ""
    return (f"Keras backend {backend} {module.__version__}; {cpu_name()}{gpu}; "
            f"devices {devices}")


def matmul_flops(n=4096, dtype="float32", repeats=5):
    """The best FLOP/s of an n x n matrix product here, through Keras: a measured ceiling.

    A virtual machine's /proc/cpuinfo gives the nominal clock; the cores may
    run faster, so a dense matrix product can beat `cpu_peak`'s estimate. On
    a GPU, give the dtype the model computes in (``float16`` for mixed
    precision). Random operands: zeros can run faster than real data.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (keras.ops.convert_to_tensor(rng.normal(size=(n, n)).astype(dtype))
            for _ in range(2))

    def product():
        # Reading one element waits for the whole product, on every backend.
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])

    product()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def main_per_onednn(script, setting, measure, args):
    """Runs `measure(args)` here (``setting="inherit"``) or `script` again in child processes.

    ``TF_ENABLE_ONEDNN_OPTS`` must be set before TensorFlow is imported, so
    ``on``, ``off`` and ``both`` rerun the script without its ``--onednn``
    option, with the variable set, once per setting.
    """
    if setting == "inherit":
        measure(args)
        return
    i = sys.argv.index("--onednn")
    child = sys.argv[1:i] + sys.argv[i + 2:]
    for value in (("on", "off") if setting == "both" else (setting,)):
        print(f"\n## oneDNN {value}\n", flush=True)
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if value == "on" else "0"}
        subprocess.run([sys.executable, script, *child], env=env, check=True)


def _lscpu_model():
    """``lscpu``'s model name, or None where lscpu is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^Model name:\s*(.*)$", out, re.M)
    return match.group(1).strip() if match else None


def _git(*args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        done = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def provenance(argv=None):
    """Where and when a results file was made: the head of every ``benchmarks/results`` file.

    The date (UTC), the command as typed (this script and its arguments), the
    commit checked out (``-dirty`` when tracked files were changed, as in a
    working tree shared with other work), ``lscpu``'s model name and
    `cpu_name`'s line, the versions of TensorFlow and Keras installed, and
    the load average (1, 5, 15 minutes) as the script starts: on a shared
    machine, how busy it was (the scripts add it at their end too).
    """
    from importlib import metadata

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    script = os.path.relpath(os.path.abspath(sys.argv[0]),
                             os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = sys.argv[1:] if argv is None else list(argv)
    return {"date": time.strftime("%Y-%m-%d", time.gmtime()),
            "command": shlex.join(["python", script, *argv]),
            "commit": _git("describe", "--always", "--dirty", "--abbrev=7"),
            "machine": _lscpu_model(), "cpu": cpu_name(),
            "tensorflow": version("tensorflow"), "keras": version("keras"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
