"""The command line as a person uses it: exit codes (0 ok, 1 failure, 2 usage error), one-line errors with
the remedy, never a traceback for a user error, help on every option, the ``aclnn-py`` script."""
from __future__ import annotations

import argparse

import pytest

from aclnn_py.__main__ import build_parser

from cli_support import console_script, no_cann_env, run_cli, sim_env, stderr_lines


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for a in _all_actions(sub):
                    yield a
        else:
            yield action


def test_every_option_has_help():
    missing = [a.option_strings for a in _all_actions(build_parser("aclnn-py"))
               if a.option_strings and not a.help]
    assert missing == []


@pytest.mark.parametrize("args", [["--help"], ["info", "--help"], ["demo", "--help"], ["smoke", "--help"],
                                  ["sim", "--help"], ["sim", "build", "--help"]], ids=" ".join)
def test_help(args):
    r = run_cli(args, sim_env())
    assert r.returncode == 0 and "usage:" in r.stdout and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [[], ["nope"], ["demo", "--which", "nope"], ["demo", "--bogus"],
                                  ["smoke", "--ulp-tolerance", "x"], ["sim"]], ids=lambda a: " ".join(a) or "none")
def test_usage_errors_exit_2(args):
    r = run_cli(args, sim_env())
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr, r.stderr


def _one_line_error(r, status: int, *fragments: str) -> str:
    lines = stderr_lines(r)
    assert r.returncode == status, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert "error:" in lines[0], lines
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("script", [False, True], ids=["python -m aclnn_py", "aclnn-py"])
def test_bad_backend_variable(script):
    if script and console_script() is None:
        pytest.skip("the aclnn-py console script is not installed (pip install -e . installs it)")
    env = sim_env(ACLNN_PY_BACKEND="bogus")
    line = _one_line_error(run_cli(["demo"], env, script=script), 2, "ACLNN_PY_BACKEND", "'bogus'", "unset it")
    assert line.startswith("aclnn-py: error:" if script else "python -m aclnn_py: error:")
    r = run_cli(["info"], env, script=script)          # info reports it instead of failing
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "ACLNN_PY_BACKEND='bogus'" in r.stdout and "INVALID" in r.stdout


def test_device_backend_unavailable_without_cann(tmp_path):
    env = no_cann_env(tmp_path)
    _one_line_error(run_cli(["demo", "--backend", "device"], env), 1, "device backend requested but unavailable",
                    "does not exist", "sim build")
    _one_line_error(run_cli(["smoke", "--quick", "--backend", "device"], env), 1,
                    "device backend requested but unavailable")
    r = run_cli(["smoke", "--quick"], env)            # auto: the reference, saying so once
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "smoke suite on the numpy reference backend" in r.stdout and "smoke: PASS" in r.stdout
    assert stderr_lines(r) and all("reference" in line for line in stderr_lines(r)), r.stderr
    r = run_cli(["info"], env)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "CANN: not found" in r.stdout and "auto picks: reference (numpy), because no CANN" in r.stdout


def test_world_larger_than_the_devices():
    env = sim_env(ACLNN_SIM_DEVICE_COUNT="4")
    _one_line_error(run_cli(["demo", "--which", "barrier", "--backend", "device"], env), 1,
                    "the runtime reports 4 devices, 8 needed")
    r = run_cli(["demo", "--which", "barrier"], env)   # auto: the reference, saying so once, in one line
    warnings = [line for line in stderr_lines(r) if "warning:" in line]
    assert r.returncode == 0 and "Traceback" not in r.stderr and "demo: OK" in r.stdout, r.stderr
    assert len(warnings) == 1 and "reports 4 devices, 8 needed" in warnings[0], r.stderr


def test_sim_commands_before_a_build(tmp_path):
    env = sim_env(ACLNN_PY_SIM_HOME=str(tmp_path / "tree"))
    r = run_cli(["sim", "path"], env)
    assert r.returncode == 1 and r.stdout.strip() == str(tmp_path / "tree") and "sim build" in r.stderr
    _one_line_error(run_cli(["sim", "env"], env), 1, "not built", "sim build")


def test_sim_path_and_env_in_the_checkout(cann_sim_home):
    env = sim_env()
    r = run_cli(["sim", "path"], env)
    assert r.returncode == 0 and r.stdout.strip() == str(cann_sim_home)
    r = run_cli(["sim", "env"], env)
    assert r.returncode == 0, r.stderr
    assert f"export ASCEND_HOME_PATH={cann_sim_home}" in r.stdout.splitlines()
    assert any(line.startswith(f"export LD_LIBRARY_PATH={cann_sim_home}/lib64") for line in r.stdout.splitlines())


def test_a_broken_install_is_reported_not_crashed_on(tmp_path):
    (tmp_path / "cann" / "lib64").mkdir(parents=True)
    (tmp_path / "cann" / "lib64" / "libascendcl.so").write_bytes(b"not a library")
    env = no_cann_env(tmp_path, ACLNN_PY_CANN_HOME=str(tmp_path / "cann"))
    r = run_cli(["info"], env)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "loading failed" in r.stdout and "auto picks: reference (numpy), because the CANN libraries failed" in r.stdout
    _one_line_error(run_cli(["demo", "--backend", "device"], env), 1, "failed to load", "libascendcl.so")
