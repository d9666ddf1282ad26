"""The kres command line."""

import os
import subprocess
import sys

from kres.cli import main


def test_models_prints_params_and_macs(capsys):
    assert main(["models", "cifar_resnet2*", "resnext29_32x4d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "params", "MMACs", "input", "classes"]
    assert lines[1].split() == ["cifar_resnet20", "269,722", "40.6", "32", "10"]
    assert lines[2].split() == ["resnext29_32x4d", "4,775,754", "774.1", "32", "10"]


def test_summary_with_overrides(capsys):
    assert main(["summary", "cifar_resnet20", "--set", "depths=(5,5,5)", "--classes", "100"]) == 0
    out = capsys.readouterr().out
    assert "conv4_block5_out" in out
    assert "470,004 trainable parameters" in out  # resnet32 with a 100-class head


def test_bad_name_exits_2(capsys):
    assert main(["summary", "resnet51"]) == 2
    assert "Did you mean 'resnet50'" in capsys.readouterr().err


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "kres")
    out = subprocess.run([script, "models", "--names-only", "wrn*"], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["wrn16_4", "wrn16_8", "wrn28_10", "wrn40_4"]
