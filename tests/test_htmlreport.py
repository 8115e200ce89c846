"""The HTML report (hnfc/report/html.py): every section is there, the page is self-contained, the
per-output histograms come from verification, and headless Chromium renders it (the bundled
naive example and transformers' GPT-2 tiny). `hnfc optimize --report x.html` writes the page.

Chromium: Debian's `chromium` package (.ci/run installs it). Without it these tests skip, unless
HNFC_REQUIRE_CHROMIUM=1 (set by .ci/run), where a missing browser is a failure."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import hnfc
from hnfc.report.html import SECTIONS
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def naive():
    from hnfc.examples.naive import example_inputs, make_model

    x = example_inputs()
    return hnfc.optimize(make_model(), x), x


@pytest.fixture(scope="module")
def gpt2():
    from tests.corpus import build

    model, inputs = build("gpt2_eager")
    return hnfc.optimize(model, inputs), inputs


def _sections(page: str) -> set[str]:
    return set(re.findall(r"<section id=['\"]([a-z]+)['\"]", page))


def test_page_has_every_section_and_is_self_contained(naive, tmp_path):
    gm, x = naive
    path = tmp_path / "report.html"
    page = hnfc.report_html(gm, path)
    assert path.read_text() == page
    assert _sections(page) == set(SECTIONS)
    assert not re.search(r"<(script|link|img|iframe)\b", page)  # nothing loaded from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "url(http" not in page and "@import" not in page
    for rw in gm.report.rewrites:  # each rewrite with its before and after expression
        assert rw.rules[0] in page
    assert "softplus" in page and "log-softmax" in page
    assert page.count("<svg") >= 3  # histogram, graph strip, timeline


def test_histograms_come_from_verification(naive):
    gm, _ = naive
    outs = gm.report.outputs
    assert outs, "the naive example's outputs are measured whole"
    for o in outs:
        assert len(o.histogram_before) == len(o.histogram_after) == 65
        assert sum(o.histogram_before) == sum(o.histogram_after) > 0
        mean = sum(k * c for k, c in enumerate(o.histogram_before)) / sum(o.histogram_before)
        assert mean <= o.before_mean + 1e-9 < mean + 1  # buckets floor the bits


def test_page_from_json_dict_and_report(naive):
    gm, _ = naive
    as_json = json.loads(json.dumps(gm.report.to_dict()))
    page = hnfc.report_html(as_json)
    assert _sections(page) == set(SECTIONS) and "<svg" in page
    assert _sections(gm.report.to_html()) == set(SECTIONS)


def test_page_with_precision_stage(naive):
    import torch

    from hnfc.examples.naive import make_model

    _, x = naive
    gm = hnfc.optimize(make_model(), x, target=1e-2, dtypes=[torch.bfloat16, torch.float32])
    page = hnfc.report_html(gm)
    assert "bf16" in page and "low-precision FLOP share" in page


# ---------------------------------------------------------------------------------------------
# Headless Chromium


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("HNFC_REQUIRE_CHROMIUM") == "1":
            pytest.fail("HNFC_REQUIRE_CHROMIUM=1 but no chromium on PATH (.ci/run installs Debian's chromium package)")
        pytest.skip("no chromium on PATH (install Debian's `chromium` package; .ci/run does)")
    return exe


def run_chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _check_rendered(path: Path, tmp_path: Path, expect: list[str]) -> None:
    r = run_chromium("--dump-dom", path.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert _sections(dom) == set(SECTIONS), _sections(dom)
    assert dom.count("<svg") >= 2
    for text in expect:
        assert text in dom
    shot = tmp_path / (path.stem + ".png")
    r = run_chromium("--window-size=1280,1600", f"--screenshot={shot}", path.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a real page, not a blank one


def test_chromium_renders_the_example_report(naive, tmp_path):
    gm, x = naive
    path = tmp_path / "naive.html"
    hnfc.report_html(gm, path)
    _check_rendered(path, tmp_path, ["softplus-intro", "log-softmax", "output 0"])


@pytest.mark.slow
def test_chromium_renders_the_gpt2_report(gpt2, tmp_path):
    pytest.importorskip("transformers")
    gm, inputs = gpt2
    path = tmp_path / "gpt2.html"
    hnfc.report_html(gm, path)
    _check_rendered(path, tmp_path, ["scaled_dot_product_attention" if "scaled_dot_product_attention" in str(gm.program) else "softmax", "layer_norm"])


def test_cli_writes_html_when_the_suffix_is_html(tmp_path):
    out, report = tmp_path / "naive.pt2", tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "hnfc.cli", "optimize", "hnfc.examples.naive:make_model", "--input", "4x16:float32",
                        "--range", "x=-6:6", "-o", str(out), "--report", str(report)], capture_output=True, text=True, timeout=180, cwd=ROOT,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and _sections(page) == set(SECTIONS) and "softplus-intro" in page
