"""How long the kres command line takes to answer, next to TensorFlow's own import.

Each command runs in a fresh interpreter, `--rounds` times, the rounds
interleaved so that a drifting machine affects every command alike; the
median wall time is printed with its ratio to ``import tensorflow`` (the
floor of any command that needs TensorFlow).

    .venv/bin/python benchmarks/cli.py
    .venv/bin/python benchmarks/cli.py --against /tmp/kres-old   # another checkout, same venv

With ``--against``, the same commands also run from that source tree (first
on ``sys.path``, the editable install set aside), side by side in the same
rounds; ``--skip`` leaves slow commands out of those runs.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402

COMMANDS = {
    "import tensorflow": ["-c", "import tensorflow"],
    "import kres": ["-c", "import kres"],
    "kres --help": ["-m", "kres.cli", "--help"],
    "kres models": ["-m", "kres.cli", "models"],
    "kres summary cifar_resnet20": ["-m", "kres.cli", "summary", "cifar_resnet20"],
}


# Runs a command from another source tree: the venv's editable install of kres
# would otherwise be found first, whatever PYTHONPATH says.
FROM_SOURCE = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, {source!r})
kind, target, *rest = {args!r}
sys.argv = [target, *rest]
if kind == "-c":
    exec(compile(target, "<command>", "exec"), {{"__name__": "__main__"}})
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def run_once(args, source):
    args = ["-c", FROM_SOURCE.format(source=source, args=list(args))]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed: {done.stderr[-1000:]}")
    return seconds, done.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", help="another kres source tree to time side by side")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="commands to leave out of the --against runs (slow ones)")
    args = parser.parse_args(argv)
    print(f"{cpu_name()}; Python {sys.version.split()[0]}")
    # Both through the same start-up code, so that only the trees differ.
    sources = {"this tree": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    if args.against:
        sources[f"--against {args.against}"] = os.path.abspath(args.against)
    times = {(label, name): [] for label in sources for name in COMMANDS}
    log_lines = {}
    for _ in range(args.rounds):
        for label, source in sources.items():
            for name, command in COMMANDS.items():
                if label != "this tree" and name in args.skip:
                    continue
                seconds, stderr = run_once(command, source)
                times[label, name].append(seconds)
                log_lines[label, name] = sum(1 for line in stderr.splitlines()
                                             if line.startswith(("I0000", "W0000", "E0000",
                                                                 "WARNING: All log")))
    floor = statistics.median(times["this tree", "import tensorflow"])
    print(f"\n{'command':<32}{'source':<26}{'median s':>9}{'x import tf':>13}"
          f"{'TF log lines':>14}")
    for name in COMMANDS:
        for label in sources:
            if not times[label, name]:
                continue
            median = statistics.median(times[label, name])
            print(f"{name:<32}{label:<26}{median:>9.2f}{median / floor:>13.2f}"
                  f"{log_lines[label, name]:>14}")


if __name__ == "__main__":
    main()
