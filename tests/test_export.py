"""Offline rewrite (hnfc/export.py): `hnfc.save` writes a torch.export .pt2 that loads with plain
`torch.export.load` in a process without hnfc, gives the optimized model's outputs and keeps the
per-node dtypes in node.meta["custom"]; the report travels inside. The same fresh process also
finds the torch.compile backend "hnf" by name alone (one interpreter start for both checks)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import hnfc
from hnfc.examples.naive import example_inputs, make_model
from hnfc.export import REPORT_FILE, read


def test_save_round_trip_in_a_process_without_hnfc(tmp_path):
    model, inputs = make_model(), example_inputs()
    path = tmp_path / "naive.pt2"
    ep = hnfc.save(model, path, inputs)
    assert path.is_file()
    optimized = hnfc.optimize(model, inputs)
    expected = optimized(*inputs)
    torch.save({"x": inputs[0], "y": expected}, tmp_path / "io.pt")
    code = textwrap.dedent(
        f"""
        import sys, torch
        io = torch.load({str(tmp_path / "io.pt")!r}, weights_only=True)
        extra = {{{REPORT_FILE!r}: ""}}
        ep = torch.export.load({str(path)!r}, extra_files=extra)
        assert "hnfc" not in sys.modules, "loading imported hnfc"
        out = ep.module()(io["x"])
        assert torch.equal(out, io["y"]), (out - io["y"]).abs().max()
        calls = [n for n in ep.graph.nodes if n.op == "call_function"]
        dtypes = [n.meta.get("custom", {{}}).get("hnf_dtype") for n in calls]
        # every float node float32; the split log_softmax counts a row's maxima in bool/int64
        assert calls and all(d in ("float32", "bool", "int64") for d in dtypes) and "float32" in dtypes, dtypes
        assert "softplus" in str([n.target for n in calls])
        assert "softplus-intro" in extra[{REPORT_FILE!r}]
        assert "hnfc" not in sys.modules
        # the torch.compile backend, by name alone
        m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
        x = torch.randn(2, 4)
        y = torch.compile(m, backend="hnf", options={{"inductor": False}})(x)
        assert torch.allclose(y, m(x)) and "hnfc.backend" in sys.modules
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    assert isinstance(ep, torch.export.ExportedProgram)


def test_read_gives_report_and_dtypes_and_save_takes_an_optimized_module(tmp_path):
    model, inputs = make_model(), example_inputs()
    optimized = hnfc.optimize(model, inputs)
    path = tmp_path / "m.pt2"
    hnfc.save(optimized, path, inputs)  # exported as is, not optimized again
    saved = read(path)
    # every float node float32 (the split log_softmax's count is bool/int64)
    assert set(saved.dtypes()) <= {"float32", "bool", "int64"} and sum(saved.dtypes().values()) == len(saved.nodes)
    assert {r for rw in saved.report["rewrites"] for r in rw["rules"]} == {r for rw in optimized.report.rewrites for r in rw.rules}
    assert any(n["hnf_op"] == "softplus" for n in saved.nodes)
    with pytest.raises(ValueError, match="already optimized"):
        hnfc.save(optimized, path, inputs, samples=2)
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.pt2")
    (tmp_path / "junk.pt2").write_text("not a zip")
    with pytest.raises(ValueError, match="not a torch.export .pt2"):
        read(tmp_path / "junk.pt2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hnfc.save(optimized, tmp_path / "nodir" / "m.pt2", inputs)
