"""bench/heldout.py --quick: the held-out-style benchmark runs, writes its JSON and Markdown, and
the few CI cases (a conjugate, a log of a ratio, logsumexp whose naive form overflows, 1 - σ)
end at most 1 bit off on average from well above it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_heldout_quick(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "heldout.py"), "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads((tmp_path / "heldout_quick.json").read_text())
    rows = data["rows"]
    assert {(row["case"], row["dtype"]) for row in rows} >= {("sqrt-x1-minus-sqrt-x", "float64"), ("logsumexp-rows-near-1000", "float32"), ("logsumexp-rows-near-1000", "bfloat16")}
    for row in rows:
        assert row["points"] > 0
        assert row["after_mean"] <= 1.0, row
        if row["dtype"] != "bfloat16":
            assert row["before_mean"] > 5.0, row  # the naive form really is broken on this domain
    assert "| scalar/float64 |" in (tmp_path / "heldout_quick.md").read_text()
