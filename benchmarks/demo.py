"""The figures the README gives for `make demo`, measured and written to a results file.

Runs the commands of the Makefile's ``demo`` target as ``make -n demo``
prints them (train, export, predict), each in a fresh process and timed,
in a scratch folder that stands in for the repository root (the export goes
to its ``saved_models/``, not the checkout's), with kres imported from the
checkout this script is in. Then the same training
command again with ``--precision float32``, for the side-by-side figures.
The environment and the prepared Fashion-MNIST are taken as they are (set
``KRES_DATA_DIR`` to use a prepared copy): the times are those of ``make
demo`` once both exist.

Writes ``--out`` (default ``benchmarks/results/demo.json``): the date,
machine, command and commit (`machine.provenance`), the demo's commands
with their wall seconds, its run's test accuracy, precision and epoch
times, how many of the test images sent through the export came back
right, the float32 run's accuracy and epoch times, float32's seconds per
epoch over the demo's, and the load average as each command ended (the
machine may be shared: the times are this run's, not the machine's best).
The README and docs/results.md quote this file, and tests/test_docs.py
checks that they quote it as it stands.

    .venv/bin/python benchmarks/demo.py
    .venv/bin/python benchmarks/demo.py --work /tmp/demo-figures   # keep the runs there
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import provenance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = "runs/demo"  # DEMO_RUN, relative to the scratch folder as make's is to the checkout


def demo_commands():
    """The ``kres`` command lines of ``make demo``, as make expands them (with DEMO_RUN=RUN)."""
    printed = subprocess.run(["make", "-n", "demo", f"DEMO_RUN={RUN}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    lines = printed.replace("\\\n", " ").splitlines()
    commands = [shlex.split(line) for line in lines if re.match(r"\S*/kres\s", line)]
    if [c[1] for c in commands] != ["train", "export", "predict"]:
        raise SystemExit(f"make -n demo printed no train, export, predict:\n{printed}")
    return commands


def run_timed(command, cwd):
    """Runs `command` in `cwd`, kres imported from this checkout; (seconds, output)."""
    executable = os.path.join(ROOT, command[0]) if not os.path.isabs(command[0]) else command[0]
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    print("$", shlex.join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run([executable, *command[1:]], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path})
    seconds = time.perf_counter() - start
    print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", flush=True)
    if done.returncode:
        raise SystemExit(f"{shlex.join(command)} exited with {done.returncode}")
    return seconds, done.stdout


def run_record(run_dir):
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    return {key: results[key] for key in ("precision", "precision_reason", "test_accuracy",
                                          "best_val_accuracy", "epoch_times",
                                          "train_images_per_second")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "demo.json"))
    parser.add_argument("--work", default=None,
                        help="the scratch folder (default: a new temporary one, kept)")
    args = parser.parse_args(argv)
    record = provenance(argv)
    work = args.work or tempfile.mkdtemp(prefix="kres-demo-figures-")
    os.makedirs(work, exist_ok=True)

    steps = []
    for command in demo_commands():
        seconds, output = run_timed(command, work)
        steps.append({"command": shlex.join(command), "seconds": round(seconds, 1),
                      "load_average_after": round(os.getloadavg()[0], 2)})
    served = re.findall(r"^(\d+) of (\d+) dataset images right through the export$", output,
                        re.M)
    if not served:
        raise SystemExit("kres predict printed no line of how many images were right")
    demo = {"commands": steps, "seconds": round(sum(s["seconds"] for s in steps), 1),
            "served_right": int(served[-1][0]), "served": int(served[-1][1]),
            "run": os.path.join(work, RUN), **run_record(os.path.join(work, RUN))}

    train = shlex.split(steps[0]["command"])
    float32_run = f"{RUN}-float32"
    train = train[:train.index("--out")] + ["--out", float32_run, "--precision", "float32"]
    seconds, _ = run_timed(train, work)
    float32 = {"command": shlex.join(train), "seconds": round(seconds, 1),
               "load_average_after": round(os.getloadavg()[0], 2),
               **run_record(os.path.join(work, float32_run))}

    ratio = (sum(float32["epoch_times"]) / len(float32["epoch_times"])
             / (sum(demo["epoch_times"]) / len(demo["epoch_times"])))
    record.update(demo=demo, float32=float32,
                  float32_epoch_time_over_demo=round(ratio, 2),
                  load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"\nthe demo: {demo['precision']}, test accuracy {demo['test_accuracy']:.2%}, "
          f"{demo['seconds']:.0f} s for its three commands, {demo['served_right']} of "
          f"{demo['served']} served right; float32: {float32['test_accuracy']:.2%}, "
          f"{ratio:.2f}x the demo's seconds per epoch\nwrote {args.out}; runs in {work}")


if __name__ == "__main__":
    main()
