"""A crafted .pt2 never runs code through hnfc (hnfc/export.py, `hnfc show`): a weight marked
`use_pickle: true` whose bytes are a pickle that creates a marker file. torch.export.load runs it
(checked first, so the test knows the tampering works); `hnfc.export.read`, `hnfc show` (text and
--json) never do, and `hnfc.export.load` refuses the archive, naming the pickled weight."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import pytest
import torch
from typer.testing import CliRunner

import hnfc
from hnfc.cli import app
from hnfc.export import load, read


class _Planted:
    """Unpickling this opens (creates) the marker file: code chosen by the archive's author."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tamper(src, dst, marker) -> str:
    """Copy the archive, marking its first weight use_pickle with the planted pickle as bytes."""
    with zipfile.ZipFile(src) as zin:
        entries = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    config_name = next(n for n in entries if n.endswith("data/weights/model_weights_config.json"))
    config = json.loads(entries[config_name])
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    entries[config_name] = json.dumps(config).encode()
    root = config_name[: -len("data/weights/model_weights_config.json")]
    entries[root + "data/weights/" + meta["path_name"]] = pickle.dumps(_Planted(str(marker)))
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in entries.items():
            zout.writestr(name, data)
    return fqn


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    good = d / "good.pt2"
    hnfc.save(model, good, (torch.randn(2, 4),), samples=1)
    return d, good


def test_the_tampering_runs_code_in_torch_export_load(archives, tmp_path):
    _, good = archives
    marker = tmp_path / "ran"
    _tamper(good, tmp_path / "evil.pt2", marker)
    try:
        torch.export.load(str(tmp_path / "evil.pt2"))
    except Exception:
        pass
    assert marker.exists(), "the planted pickle did not run in torch.export.load: the tampering test below proves nothing"


def test_no_hnfc_entry_point_runs_the_planted_pickle(archives, tmp_path):
    _, good = archives
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt2"
    fqn = _tamper(good, evil, marker)

    saved = read(evil)  # the JSON alone: report, nodes, inputs
    assert saved.report is not None and saved.nodes and saved.inputs and saved.outputs == 1
    assert not marker.exists()

    runner = CliRunner()
    for args in (["show", str(evil)], ["show", str(evil), "--json"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert not marker.exists(), args

    for loader in (lambda: load(evil), saved.load):
        with pytest.raises(ValueError, match="pickle") as e:
            loader()
        assert fqn in str(e.value)
        assert not marker.exists()


def test_load_gives_a_program_that_runs_for_a_clean_archive(archives):
    _, good = archives
    ep = load(good)
    x = torch.randn(2, 4)
    assert ep.module()(x).shape == (2, 3)
    assert read(good).dtypes() == {"float32": len(read(good).nodes)}


def test_sample_inputs_that_need_the_unsafe_unpickler_are_refused(archives, tmp_path):
    """torch falls back to weights_only=False for sample inputs the safe unpickler refuses."""
    _, good = archives
    marker = tmp_path / "ran"
    with zipfile.ZipFile(good) as zin:
        entries = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    name = next(n for n in entries if n.endswith("data/sample_inputs/model.pt"))
    buf = io.BytesIO()
    torch.save(_Planted(str(marker)), buf)  # a torch zip whose pickle runs code when unpickled
    entries[name] = buf.getvalue()
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(evil, "w") as zout:
        for n, data in entries.items():
            zout.writestr(n, data)
    with pytest.raises(ValueError, match="weights_only"):
        load(evil)
    assert read(evil).nodes and not marker.exists()


def test_malformed_archives_are_clean_errors(archives, tmp_path):
    _, good = archives
    with zipfile.ZipFile(good) as zin:
        entries = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    model = next(n for n in entries if n.endswith("models/model.json"))
    report = next(n for n in entries if n.endswith("extra/hnfc/report.json"))
    for name, data, message in [(model, b"[1, 2]", "not a torch.export graph"), (model, b"{not json", "not valid JSON")]:
        bad = tmp_path / "bad.pt2"
        with zipfile.ZipFile(bad, "w") as zout:
            for n, d in {**entries, name: data}.items():
                zout.writestr(n, d)
        with pytest.raises(ValueError, match=message):
            read(bad)
        r = CliRunner().invoke(app, ["show", str(bad)])
        assert r.exit_code == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.output
    bad = tmp_path / "bad-report.pt2"
    with zipfile.ZipFile(bad, "w") as zout:
        for n, d in {**entries, report: json.dumps({"report": {"rewrites": [{"values": 3}]}}).encode()}.items():
            zout.writestr(n, d)
    r = CliRunner().invoke(app, ["show", str(bad)])
    assert r.exit_code == 2 and "report is malformed" in r.stderr and "Traceback" not in r.output, r.output
