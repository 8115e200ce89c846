"""The CLI (hnfc/cli.py): `optimize` -> .pt2 (+ report JSON), `show` lists ops, rewrites and
dtypes, `lint` finds the naive example's hazards and exits 1 (a CI gate) and passes a clean MLP;
bad input gives one clean "error:" line and a non-zero exit, never a traceback. End to end in
subprocesses (`python -m hnfc.cli`); the error cases in-process (typer's CliRunner)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from hnfc.cli import app, make_inputs, parse_input_spec, parse_range
from tests.conftest import ROOT

NAIVE = "hnfc.examples.naive:make_model"


def hnfc_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "hnfc.cli", *map(str, args)], capture_output=True, text=True, timeout=180, cwd=cwd,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_optimize_then_show_end_to_end(tmp_path):
    out, report = tmp_path / "naive.pt2", tmp_path / "report.json"
    r = hnfc_cli("optimize", NAIVE, "--input", "4x16:float32", "--range", "x=-6:6", "-o", out, "--report", report)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "wrote" in r.stdout
    data = json.loads(report.read_text())
    rules = {rule for rw in data["rewrites"] for rule in rw["rules"]}
    assert "softplus-intro" in rules and "softplus-intro" in r.stdout
    r = hnfc_cli("show", out)
    assert r.returncode == 0, r.stderr
    dtypes = next(line for line in r.stdout.splitlines() if line.startswith("dtypes:"))
    assert "aten.softplus.default" in r.stdout and "float32" in dtypes and not any(d in dtypes for d in ("float16", "bfloat16", "float64"))
    assert all(rule in r.stdout for rule in rules)  # the report stored in the archive


def test_lint_finds_the_naive_hazards_and_fails():
    r = hnfc_cli("lint", NAIVE, "--input", "4x16", "--json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert not data["ok"] and data["failing"] >= 1
    fixes = {rule for f in data["findings"] for rule in f["rules"]}
    assert {"log-softmax-intro", "softplus-intro"} <= fixes
    failing = [f for f in data["findings"] if f["kind"] != "ill-conditioned" and f["bits"] > data["max_bits"]]
    # log of a hand-written softmax: log_softmax, with the max's term kept apart (sharp logits)
    assert any("log-softmax-intro" in f["rules"] and f["fix"] for f in failing)


class Cancelling(torch.nn.Module):
    """sum(x) - n·mean(x): a difference of equal values that no rule rewrites (ill-conditioned)."""

    def forward(self, x):
        return x.sum(-1) - 8 * x.mean(-1) + x[..., 0]


def test_lint_passes_a_clean_model_and_reports_in_text():
    runner = CliRunner()
    r = runner.invoke(app, ["lint", "tests.corpus:MLP", "--input", "4x8"])
    assert r.exit_code == 0, r.output
    assert "no findings" in r.output
    r = runner.invoke(app, ["lint", "tests.test_cli:Cancelling", "--input", "4x8", "--range", "x=1:2"])
    assert r.exit_code == 0 and "note ill-conditioned" in r.output and "0 failing finding(s)" in r.output, r.output
    r = runner.invoke(app, ["lint", "tests.test_cli:Cancelling", "--input", "4x8", "--range", "x=1:2", "--strict"])
    assert r.exit_code == 1 and "FAIL ill-conditioned" in r.output, r.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["optimize", "foo_no_such_module:make", "-i", "4x16", "-o", "x.pt2"], 2, "cannot import module 'foo_no_such_module'"),
        (["optimize", "hnfc.examples.naive:nope", "-i", "4x16", "-o", "x.pt2"], 2, "module 'hnfc.examples.naive' has no attribute 'nope'"),
        (["optimize", "hnfc.examples.naive", "-o", "x.pt2"], 2, "expected MODULE:FACTORY"),
        (["optimize", NAIVE, "-i", "4y16", "-o", "x.pt2"], 2, "bad --input '4y16'"),
        (["optimize", NAIVE, "-i", "4x16:float33", "-o", "x.pt2"], 2, "unknown dtype 'float33'"),
        (["optimize", NAIVE, "-i", "4x16", "-o", "x.pt2", "-r", "x=4"], 2, "bad --range 'x=4'"),
        (["optimize", NAIVE, "-i", "4x16", "-o", "x.pt2", "-r", "x=4:1"], 2, "LO is above HI"),
        (["optimize", NAIVE, "-i", "4x16", "-o", "x.pt2", "--set", "max_nodez=3"], 2, "unknown option 'max_nodez'"),
        (["optimize", NAIVE, "-i", "4x16", "-o", "no/such/dir/x.pt2"], 2, "does not exist"),
        (["optimize", "hnfc.examples.naive:NaiveHead.forward", "-o", "x.pt2"], 1, "raised TypeError"),
        (["show", "missing.pt2"], 2, "no such file: 'missing.pt2'"),
        (["lint", NAIVE, "-i", "4x17"], 1, "cannot trace"),
        (["optimize", NAIVE, "-o", "x.pt2", "--bogus"], 2, "No such option"),
    ],
)
def test_bad_input_is_a_clean_error(args, code, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == code, r.output
    assert message in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)


def test_show_refuses_a_file_that_is_not_a_pt2(tmp_path):
    (tmp_path / "junk.pt2").write_text("hello")
    r = CliRunner().invoke(app, ["show", str(tmp_path / "junk.pt2")])
    assert r.exit_code == 2 and "not a torch.export .pt2 archive" in r.output


def test_input_and_range_specs():
    assert parse_input_spec("4x16") == ((4, 16), "float32")
    assert parse_input_spec("2x8:int64") == ((2, 8), "int64")
    assert parse_input_spec(":f64") == ((), "float64")
    x, ids = make_inputs(["4x16", "2x8:int64"], seed=0)
    assert x.dtype.is_floating_point and x.shape == (4, 16)
    assert ids.dtype.is_floating_point is False and 0 <= int(ids.min()) and int(ids.max()) < 100
    assert all((a == b).all() for a, b in zip(make_inputs(["4x16"], 3), make_inputs(["4x16"], 3)))
    assert parse_range("x=-1e-3:4") == ("x", (-1e-3, 4.0))
    assert parse_range("0=1:2") == (0, (1.0, 2.0))
