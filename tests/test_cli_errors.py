"""The command line's error contract (README "Errors and exit codes"), case by case: bad
arguments and paths exit 2, a model that cannot run or trace exits 1, each with exactly one
`error:` line on stderr (unwrapped, no traceback, no FX code) and no file left behind; exit 0
only when the written .pt2 runs, and the .pt2 and the report appear together or not at all.
In-process (typer's CliRunner), in a scratch directory holding small model files."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from hnfc.cli import app, parse_options

NAIVE = "hnfc.examples.naive:make_model"

FILES = {
    "lin.py": """
        import torch
        def make():
            return torch.nn.Linear(16, 4)
        def example_inputs():
            return (torch.randn(4, 16),)
    """,
    "branchy.py": """
        import torch
        class Branchy(torch.nn.Module):
            def forward(self, x):
                if x.sum() > 0:  # data-dependent: hnfc cannot trace it, torch runs it
                    return x * 2
                return torch.log(x)
        def make():
            return Branchy()
        def example_inputs():
            return (torch.rand(4, 8),)
    """,
    "nanin.py": """
        import torch
        def make():
            return torch.nn.Linear(16, 4)
        def example_inputs():
            return (torch.full((4, 16), float("nan")),)
    """,
    "noisy.py": """
        import numpy as np
        import torch
        def make():
            np.log(np.zeros(1))  # a numpy RuntimeWarning while the model is built
            return torch.nn.Tanh()
        def example_inputs():
            return (torch.randn(3),)
    """,
    "mypack.py": """
        from hnfc.rewrites import log, log1p, rule, vars
        x, = vars("x")
        RULES = [rule("my-log1p", log(1 + x), log1p(x))]
    """,
    "badpack.py": """
        from hnfc.rewrites import rule, vars
        x, = vars("x")
        RULES = [rule("div-self-unguarded", x / x, 1 + 0 * x)]
    """,
}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    for name, text in FILES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "adir").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _listing(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if "__pycache__" not in p.parts)


LONG = "x" * 150  # a path longer than 80 columns: its error line must not wrap

CASES = [
    # bad arguments and paths: exit 2
    (["optimize", NAIVE, "-i", "4x16", "-o", "out.pt2", "--report", "adir"], 2, "cannot write --report 'adir': it is a directory"),
    (["optimize", NAIVE, "-i", "4x16", "-o", "adir"], 2, "cannot write --output 'adir': it is a directory"),
    (["optimize", NAIVE, "-i", "4x16", "-o", "out.pt2", "--report", "out.pt2"], 2, "name the same file"),
    (["optimize", NAIVE, "-i", "4x16", "-o", f"no/{LONG}/x.pt2"], 2, f"directory 'no/{LONG}' does not exist"),
    (["optimize", NAIVE, "-i", "100000x100000", "-o", "out.pt2"], 2, "needs 37.3 GiB"),
    (["lint", NAIVE, "-i", "100000x100000"], 2, "example inputs are limited to 1.0 GiB"),
    (["optimize", NAIVE, "-i", "4x16", "-o", "out.pt2", "--set", "families=log-epx"], 2, "unknown rule family 'log-epx'"),
    (["optimize", NAIVE, "-i", "4x16", "-o", "out.pt2", "--set", "samples=1.5"], 2, "bad --set 'samples=1.5': expected an integer"),
    (["optimize", NAIVE, "-i", "4x16", "-o", "out.pt2", "--set", "max_nodes=abc"], 2, "bad --set 'max_nodes=abc': expected an integer"),
    (["optimize", NAIVE, "-i", "4x16", "-o", "out.pt2", "--set", "verify=maybe"], 2, "expected true or false"),
    (["optimize", NAIVE, "-i", "4x16", "-o", "out.pt2", "--set", "time_limit=nan"], 2, "expected a number, not NaN"),
    (["lint", NAIVE, "-i", "4x16", "--max-bits", "nan"], 2, "bad --max-bits nan"),
    (["lint", NAIVE, "-i", "4x16", "--max-bits", "abc"], 2, "Invalid value for '--max-bits'"),
    (["optimize", NAIVE, "-o", "out.pt2", "--bogus"], 2, "No such option: --bogus"),
    (["optimize"], 2, "Missing argument 'MODULE:FACTORY'"),
    (["rules", "check", "nosuchpack"], 2, "cannot load rule pack 'nosuchpack'"),
    (["show", "adir"], 2, "'adir' is a directory"),
    (["show", "missing.pt2"], 2, "no such file: 'missing.pt2'"),
    # the model cannot run on its inputs, or hnfc cannot trace it: exit 1
    (["lint", NAIVE, "-i", "4x16:float64"], 1, "matrix product of mixed dtypes f32 and f64"),
    (["optimize", "lin.py:make", "-i", "4x16:float64", "-o", "out.pt2"], 1, "cannot run on these inputs: RuntimeError: mat1 and mat2 must have the same dtype"),
    (["optimize", "lin.py:make", "-i", "4x17", "-o", "out.pt2"], 1, "cannot run on these inputs"),
    (["optimize", "branchy.py:make", "-o", "out.pt2", "--report", "r.json"], 1, "cannot trace branchy.py:make"),
    (["lint", "branchy.py:make"], 1, "cannot trace branchy.py:make"),
    (["optimize", "nanin.py:make", "-o", "out.pt2"], 1, "example input #0 has 64 non-finite value(s)"),
    (["lint", "nanin.py:make"], 1, "non-finite"),
]


@pytest.mark.parametrize("args, code, message", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_error_contract(args, code, message, scratch):
    before = _listing(scratch)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == code, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr  # one line: unwrapped, no traceback
    assert message in lines[0], lines[0]
    assert "Traceback" not in r.output and "def forward" not in r.output  # no FX code dump
    assert _listing(scratch) == before  # nothing written, no temporary file left


def test_rules_check_resolves_packs_in_the_current_directory(scratch):
    r = CliRunner().invoke(app, ["rules", "check", "mypack", "--samples", "200"])
    assert r.exit_code == 0 and "my-log1p" in r.stdout and not r.stderr, r.output
    r = CliRunner().invoke(app, ["rules", "check", "badpack", "--samples", "200"])
    assert r.exit_code == 1 and "refused" in r.stdout, r.output


def test_set_values_are_read_with_the_field_type():
    assert parse_options(["families=log-exp"]) == {"families": ("log-exp",)}  # one name, not letters
    assert parse_options(["families=log-exp,softmax", "verify=false", "target=none"]) == {"families": ("log-exp", "softmax"), "verify": False, "target": None}
    assert parse_options(['families=["losses"]', "target=1e-3", "max_nodes=500", "time_limit=3"]) == {
        "families": ("losses",), "target": 1e-3, "max_nodes": 500, "time_limit": 3.0}


def test_a_crashed_optimizer_is_not_reported_as_a_stable_model(scratch, monkeypatch):
    import hnfc.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(hnfc.pipeline, "optimize_program", broken)
    r = CliRunner().invoke(app, ["optimize", "lin.py:make", "-o", "out.pt2", "--report", "r.json"])
    assert r.exit_code == 0, r.output  # the original model is written and runs, with the warning
    assert "most stable" not in r.stdout and "optimizer failed (RuntimeError: boom)" in r.stdout
    assert "optimizer failed" in " ".join(json.loads((scratch / "r.json").read_text())["warnings"])


def test_warnings_do_not_leak_to_stderr(scratch):
    r = CliRunner().invoke(app, ["lint", "noisy.py:make"])
    assert r.exit_code == 0 and r.stderr == "", r.stderr


def test_nothing_is_written_unless_the_exported_model_runs(scratch, monkeypatch):
    import hnfc.export

    class Broken:
        def module(self):
            def run(*args):
                raise RuntimeError("cannot run")
            return run

    monkeypatch.setattr(hnfc.export, "export", lambda *a, **k: (Broken(), None))
    before = _listing(scratch)
    r = CliRunner().invoke(app, ["optimize", "lin.py:make", "-o", "out.pt2", "--report", "r.json", "--set", "verify=false"])
    assert r.exit_code == 1 and "the exported model fails on the example inputs" in r.stderr, r.output
    assert _listing(scratch) == before


def test_report_and_model_are_written_together_or_not_at_all(scratch, monkeypatch):
    import pathlib

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(self))

    before = _listing(scratch)
    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "write_text", full_disk)
        r = CliRunner().invoke(app, ["optimize", "lin.py:make", "-o", "out.pt2", "--report", "r.json", "--set", "verify=false"])
    assert r.exit_code == 2 and r.stderr.startswith("error: cannot write") and "No space left" in r.stderr, r.output
    assert _listing(scratch) == before  # the .pt2 was complete, but its report was not: neither appears
    r = CliRunner().invoke(app, ["optimize", "lin.py:make", "-o", "out.pt2", "--report", "r.json", "--set", "verify=false"])
    assert r.exit_code == 0, r.output
    assert _listing(scratch) == sorted(before + ["out.pt2", "r.json"])
    ep = torch.export.load(str(scratch / "out.pt2"))
    assert ep.module()(torch.randn(4, 16)).shape == (4, 4)
