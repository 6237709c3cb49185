"""Usage errors: one short message on stderr, exit status 2, never a traceback."""

import pytest
from conftest import run_sweep


@pytest.mark.parametrize("args, message", [
    (["run", "--space", "nope"], "Unknown search space 'nope'"),
    (["run", "--data", "/nowhere/cifar"], "No CIFAR-10 found at /nowhere/cifar"),
    (["run", "--max-trials", "0"], "--max-trials must be at least 1"),
    (["run", "--seed", "-3"], "--seed must be 0 or more"),
    (["run", "--tuner", "grid"], "invalid choice: 'grid'"),
    (["report", "--dir", "no_runs_here"], "No search under no_runs_here/"),
    (["report", "--project", "missing"], "No search at runs/missing"),
])
def test_usage_errors_exit_2_without_traceback(tmp_path, args, message):
    result = run_sweep(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3


def test_console_script_and_module_share_the_parser(tmp_path):
    result = run_sweep("run", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--space", "--tuner", "--max-trials", "--max-epochs", "--seed", "--project",
                   "--dir", "--data", "--fresh", "--train-size", "--val-size"):
        assert option in result.stdout
