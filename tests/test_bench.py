"""bench/run_all.py, the one benchmark command: its quick mode runs in a subprocess into a temp dir
and writes JSON that parses and the Markdown summary. CI runs the subset `--only stability,scale`
(about 20 s): the autocast and compile quick modes take minutes (compile measures three backends,
each in fresh processes), so they are left to `python bench/run_all.py --quick` by hand."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_run_all_quick_writes_results_and_summary(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--only", "stability,scale", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    stab = json.loads((tmp_path / "stability.json").read_text())
    scale = json.loads((tmp_path / "scale.json").read_text())
    meta = json.loads((tmp_path / "run_all.json").read_text())
    assert stab["quick"] and {r["dtype"] for r in stab["rows"]} == {"float32", "bfloat16"}
    assert [row["layers"] for row in scale["rows"]] == [1, 2]
    assert meta["machine"]["cpu_count"] and set(meta["status"]) == {"stability", "scale"}
    summary = (tmp_path / "SUMMARY.md").read_text()
    for heading in ("## Accuracy", "## Cost model", "## Scaling"):
        assert heading in summary
    assert "Spearman" in summary and "quick mode" in summary and "CPUs" in summary


def test_run_all_rejects_unknown_benchmarks(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--only", "nope", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "unknown benchmark" in r.stderr
