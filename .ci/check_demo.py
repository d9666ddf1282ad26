"""CI's check of the main job: `make demo` still trains, exports and serves.

    python .ci/check_demo.py RUN_DIR DEMO_LOG

Fails (exit 1, saying why) when the run's test accuracy is below the floor,
when fewer than 7 of the 8 test images sent through the export come back
right, or when the log is flooded by a progress bar redrawn at every step.
"""

import json
import os
import re
import sys

# The demo (cifar_resnet20, 2 epochs of he2015-cifar on Fashion-MNIST, seed 0) scores
# what benchmarks/results/demo.json records for it, in bfloat16 and in float32, on the
# 2-core AMD EPYC with AVX512-BF16 (the README quotes the file); its runs on that machine
# so far, with the batch orders of then and now, gave 89.45% to 90.29%. A floor 4.5
# points or more under them catches a broken pipeline, model or export (a wrong
# normalisation costs tens of points) without failing on another machine's arithmetic.
FLOOR = 0.85
MIN_RIGHT, SENT = 7, 8
# Lines of the log, a carriage return counted as a line break (Python reads the log
# with universal newlines): a line per epoch, the export's and the predictions' (54
# lines when measured; 91 with the progress of preparing the data, which CI's tests
# have done before), far fewer than the 2 x 429 redraws of a progress bar per step.
MAX_LOG_LINES = 200


def main(run_dir, log_path):
    with open(os.path.join(run_dir, "results.json")) as f:
        accuracy = json.load(f)["test_accuracy"]
    with open(log_path) as f:
        log = f.read()
    found = re.findall(r"^(\d+) of (\d+) dataset images right through the export$", log,
                       re.MULTILINE)
    problems = []
    if not accuracy >= FLOOR:
        problems.append(f"test accuracy {accuracy:.4f} is below the floor {FLOOR}")
    if not found:
        problems.append("the demo's log has no line saying how many served images were right")
    else:
        right, sent = map(int, found[-1])
        if sent != SENT or right < MIN_RIGHT:
            problems.append(f"{right} of {sent} test images served right; the demo needs at "
                            f"least {MIN_RIGHT} of {SENT}")
    lines = log.count("\n")
    if lines > MAX_LOG_LINES:
        problems.append(f"the demo's log has {lines} lines (at most {MAX_LOG_LINES}): is a "
                        "progress bar redrawn at every step?")
    for problem in problems:
        print(f"check_demo: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_demo: test accuracy {accuracy:.4f} (floor {FLOOR}), {right} of {sent} "
              f"served right, {lines} log lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
