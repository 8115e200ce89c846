"""The `hnfc` command line (typer: subcommands, --help and exit codes for free).

`hnfc example` is the README's main job: trace the bundled naive model, optimize it, print the
IR before and after and the report (bits of error against the mpmath reference).
`hnfc optimize` exports an optimized model to .pt2, `hnfc show` prints what is in one (from the
archive's JSON: no weight is loaded), `hnfc lint` lists a model's numerical hazards and exits
non-zero on failing ones (a CI gate).

The error contract, for every command: bad arguments and paths exit 2, a model that cannot run,
trace or export exits 1, each with exactly one unwrapped `error:` line on stderr and no
traceback; `optimize` exits 0 only after the exported model ran on the example inputs, and writes
the .pt2 and the report together (temporary files, then os.replace) or not at all.
"""

from __future__ import annotations

import sys as _sys

import typer
from typer.core import TyperGroup

try:  # recent typer parses with its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp, UsageError as _UsageError
except ImportError:
    from click.exceptions import NoArgsIsHelpError as _NoArgsIsHelp, UsageError as _UsageError
_Abort = typer.Abort


class _OneLineErrors(TyperGroup):
    """Usage errors (unknown option, missing argument, a value click cannot convert) as one
    `error:` line on stderr, exit 2, like every other bad argument; click would print the usage
    and a box around the message."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _NoArgsIsHelp as e:
            e.show()
            _sys.exit(e.exit_code)
        except _UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            _print_error(e.format_message() + where)
            _sys.exit(EXIT_USAGE)
        except _Abort:
            _print_error("aborted")
            _sys.exit(EXIT_FINDINGS)
        _sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, help="hnfc: a numerical-stability compiler for PyTorch.")


@app.callback()
def _group() -> None:
    """Keep `hnfc` a command group even while it has a single command."""


@app.command()
def example(show_ir: bool = typer.Option(True, help="print the IR before and after")) -> None:
    """Optimize the bundled naive example model and print what changed and what it measured."""
    import hnfc
    from hnfc.examples.naive import example_inputs, make_model

    model, inputs = make_model(), example_inputs()
    program = hnfc.trace(model, inputs)
    optimized = hnfc.optimize(model, inputs)
    if show_ir:
        typer.echo("# traced IR\n" + str(program))
        typer.echo("# optimized IR\n" + str(optimized.program))
    typer.echo(str(optimized.report))


rules_app = typer.Typer(no_args_is_help=True, help="Rule packs: check them for soundness.")
app.add_typer(rules_app, name="rules")


@rules_app.command("check")
def rules_check(
    pack: str = typer.Argument("hnfc", help="installed pack name, 'module:attr' or module (default: hnfc's library)"),
    samples: int = typer.Option(1000, help="sampled points per rule"),
    seed: int = typer.Option(0),
) -> None:
    """Check every rule of PACK (sympy proof and sampling against mpmath); exit 1 if any is refused.
    PACK resolves as `optimize`'s MODULE does: modules in the current directory import."""
    from hnfc.rewrites.check import check_pack_cli
    from hnfc.rewrites.packs import resolve

    _importable_cwd()
    try:
        if samples < 1:
            raise UserError(f"bad --samples {samples}: expected at least 1")
        try:
            resolve(pack)
        except Exception as e:  # a pack that does not exist, import or define
            raise UserError(f"cannot load rule pack {pack!r}: {_first_line(e)}") from None
    except UserError as e:
        _fail(e)
    raise typer.Exit(check_pack_cli(pack, samples=samples, seed=seed))


def _importable_cwd() -> None:
    """Like `python -m`: modules in the current directory import."""
    if "" not in _sys.path and "." not in _sys.path:
        _sys.path.insert(0, "")


# ---------------------------------------------------------------------------------------------
# optimize / show / lint. User errors are UserErrors: one line "error: ..." on stderr and exit 2
# (bad arguments, a module that does not import, a path that cannot be written or read) or 1 (the
# model fails on its inputs, does not trace or does not export); `lint` exits 1 when it finds
# failing hazards. No tracebacks for user errors.

import json as _json
import os
from pathlib import Path as _Path

EXIT_FINDINGS = 1  # lint found failing hazards; or the model/optimizer failed
EXIT_USAGE = 2  # bad arguments, missing module/attribute/file (typer/click use 2 as well)

_DTYPES = {
    "float16": "float16", "f16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float32": "float32", "f32": "float32", "float": "float32",
    "float64": "float64", "f64": "float64", "double": "float64",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "long": "int64", "int": "int64",
    "uint8": "uint8", "bool": "bool",
}
INT_HIGH = 100  # integer inputs are drawn from [0, INT_HIGH)
MAX_INPUT_BYTES = 1 << 30  # example inputs from --input, all together; the mpmath reference could not use more anyway


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


class UserError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _fail(e: UserError):
    _print_error(str(e))
    raise typer.Exit(e.code)


def _print_error(message: str) -> None:
    """One line on stderr, "error: ...", never wrapped (soft_wrap: rich would break it at the
    terminal width, or at 80 columns when stderr is not a terminal)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(one_line(message))}")


def one_line(text: str) -> str:
    return " ".join(text.split())


def parse_input_spec(spec: str) -> tuple[tuple[int, ...], str]:
    """'4x16' / '4x16:float32' / '2x8:int64' / ':float32' (a scalar) -> (shape, dtype name)."""
    text = spec.strip()
    shape_text, _, dtype_text = text.partition(":")
    dtype_text = dtype_text.strip().lower() or "float32"
    if dtype_text not in _DTYPES:
        raise UserError(f"bad --input {spec!r}: unknown dtype {dtype_text!r} (use one of {', '.join(sorted(set(_DTYPES.values())))})")
    dims: tuple[int, ...] = ()
    if shape_text.strip():
        try:
            dims = tuple(int(d) for d in shape_text.lower().replace(",", "x").split("x"))
        except ValueError:
            raise UserError(f"bad --input {spec!r}: the shape must be sizes joined by 'x', like 4x16 or 2x3x8x8 (then optionally :DTYPE)") from None
        if any(d < 0 for d in dims):
            raise UserError(f"bad --input {spec!r}: sizes must not be negative")
    return dims, _DTYPES[dtype_text]


def make_inputs(specs: list[str], seed: int = 0) -> tuple:
    """Example inputs from --input specs: float dtypes standard normal, integers uniform in
    [0, INT_HIGH), bool uniform; from a generator seeded with `seed` (same spec, same tensors)."""
    import torch

    from hnfc.frontend.contract import input_bytes

    parsed = [(spec, *parse_input_spec(spec)) for spec in specs]
    sizes = [input_bytes(shape, getattr(torch, name)) for _, shape, name in parsed]
    if sum(sizes) > MAX_INPUT_BYTES:  # refuse before allocating (a huge --input would fail inside torch)
        spec = parsed[max(range(len(sizes)), key=sizes.__getitem__)][0]
        raise UserError(f"--input {spec!r} needs {_size(max(sizes))} ({_size(sum(sizes))} in all); example inputs are limited to {_size(MAX_INPUT_BYTES)}: give a smaller shape")
    g = torch.Generator().manual_seed(seed)
    out = []
    for spec, shape, name in parsed:
        dtype = getattr(torch, name)
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=g, dtype=torch.float32).to(dtype))
        elif dtype is torch.bool:
            out.append(torch.randint(0, 2, shape, generator=g).bool())
        else:
            out.append(torch.randint(0, INT_HIGH, shape, generator=g, dtype=dtype))
    return tuple(out)


def parse_range(spec: str) -> tuple[int | str, tuple[float, float]]:
    """'x=-4:4' or '0=1e-8:1e-3' -> (name or position, (lo, hi))."""
    name, eq, rng = spec.partition("=")
    lo_text, colon, hi_text = rng.rpartition(":") if rng.count(":") == 1 else (None, None, None)
    if not eq or not name.strip() or not colon:
        raise UserError(f"bad --range {spec!r}: expected NAME=LO:HI (or POSITION=LO:HI), like x=-4:4")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        raise UserError(f"bad --range {spec!r}: LO and HI must be numbers") from None
    if not lo <= hi:
        raise UserError(f"bad --range {spec!r}: LO is above HI")
    name = name.strip()
    return (int(name) if name.isdigit() else name), (lo, hi)


def parse_options(pairs: list[str]) -> dict:
    """--set KEY=VALUE (Config fields), each VALUE read with its field's type: true/false for
    flags, numbers, `none` for optional fields, and comma-separated names (or a JSON list) for
    lists (`families=log-exp,softmax`). Unknown keys and values that do not fit are errors."""
    from hnfc.foundation.config import Config, field_types

    types = field_types()
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise UserError(f"bad --set {pair!r}: expected KEY=VALUE")
        if key not in types:
            raise UserError(f"unknown option {key!r}; known options: {', '.join(sorted(types))}")
        try:
            out[key] = parse_value(value.strip(), types[key])
        except ValueError as e:
            raise UserError(f"bad --set {pair!r}: {e}") from None
    try:
        Config.from_options(out)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad --set: {e}") from None
    return out


def parse_value(text: str, tp):
    """`text` as a value of the annotated type `tp` (the forms Config uses); ValueError if not."""
    import typing
    from types import UnionType

    from hnfc.foundation.config import describe

    origin = typing.get_origin(tp)
    if origin in (typing.Union, UnionType):
        members = typing.get_args(tp)
        if type(None) in members and text.lower() in ("none", "null"):
            return None
        for member in members:
            if member is not type(None):
                try:
                    return parse_value(text, member)
                except ValueError:
                    continue
        raise ValueError(f"expected {describe(tp)}")
    if tp is bool:
        words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
        if text.lower() not in words:
            raise ValueError("expected true or false")
        return words[text.lower()]
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer") from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        if value != value:
            raise ValueError("expected a number, not NaN")
        return value
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if text.startswith("["):
            try:
                items = _json.loads(text)
            except ValueError:
                raise ValueError("expected a JSON list or comma-separated values") from None
            return tuple(parse_value(str(v), item) for v in items)
        return tuple(parse_value(part.strip(), item) for part in text.split(",") if part.strip())
    return text


def load_factory(target: str):
    """'package.module:factory' or 'path/to/file.py:factory' -> (factory, module)."""
    from hnfc.foundation.imports import import_attr

    if not all(target.rpartition(":")):  # MODULE, ':' and FACTORY; checked here in the CLI's words
        raise UserError(f"bad model {target!r}: expected MODULE:FACTORY, like hnfc.examples.naive:make_model")
    _importable_cwd()
    factory, module = import_attr(target, UserError)
    if not callable(factory):
        raise UserError(f"{target} is not callable: FACTORY must be a function returning an nn.Module")
    return factory, module


def build_model(target: str, input_specs: list[str], seed: int):
    """The model from MODULE:FACTORY and its example inputs (from --input, or the module's own
    `example_inputs()` when no --input is given)."""
    import torch

    factory, module = load_factory(target)
    inputs = make_inputs(input_specs, seed) if input_specs else None
    try:
        model = factory()
    except Exception as e:
        raise UserError(f"{target}() raised {type(e).__name__}: {e}", EXIT_FINDINGS) from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{target}() returned {type(model).__name__}, not a torch.nn.Module")
    if inputs is None:
        own = getattr(module, "example_inputs", None)
        if not callable(own):
            raise UserError(f"no --input given and {module.__name__} has no example_inputs(); give one --input SHAPE[:DTYPE] per model input")
        try:
            inputs = own()
            inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        except Exception as e:
            raise UserError(f"{module.__name__}.example_inputs() raised {type(e).__name__}: {e}", EXIT_FINDINGS) from None
    return model, inputs


def _ranges(specs: list[str]) -> dict | None:
    return dict(parse_range(s) for s in specs) or None


def _quiet_torch_logs() -> None:
    """torch logs tracing and loading failures itself (with tracebacks); the CLI reports them."""
    import logging

    import torch  # noqa: F401  (torch sets its loggers' levels when imported: import it first)

    for name in ("torch", "torch.export", "torch._subclasses.fake_tensor", "torch._dynamo", "torch.fx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _console():
    from rich.console import Console

    _quiet_torch_logs()
    return Console(highlight=False)


def _report_tables(console, report: dict) -> None:
    from rich.table import Table

    from hnfc.analysis.curvature import describe_prediction

    if report.get("rewrites"):
        t = Table(title="rewrites", title_justify="left")
        for col in ("at", "rules", "before", "after"):
            t.add_column(col, overflow="fold")
        for r in report["rewrites"]:
            t.add_row(",".join(f"%{v}" for v in r["values"]), ", ".join(r["rules"]), r["before"], r["after"])
        console.print(t)
    elif any(str(w).startswith(("optimizer failed", "trace failed")) for w in report.get("warnings") or []):
        console.print("rewrites: none (hnfc failed, see the warning; the original model runs)")
    else:
        console.print("rewrites: none (the model is already in its most stable known form)")
    if report.get("outputs"):
        t = Table(title="bits of error against the mpmath reference (mean / max)", title_justify="left")
        for col in ("output", "before", "after", "kept"):
            t.add_column(col)
        for o in report["outputs"]:
            t.add_row(str(o["index"]), f"{o['before_mean']:.2f} / {o['before_max']:.1f}", f"{o['after_mean']:.2f} / {o['after_max']:.1f}",
                      "rewritten" if o["accepted"] else "original (rewrite refused)")
        console.print(t)
    pb, pa = report.get("predicted_before") or {}, report.get("predicted_after") or {}
    if pb and pa:
        console.print(f"predicted: {describe_prediction(pb)} -> {describe_prediction(pa)}")
    else:
        console.print(f"predicted bits lost: {report.get('predicted_bits_before', 0):.1f} -> {report.get('predicted_bits_after', 0):.1f}")
    for w in report.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {w}")


@app.command()
def optimize(
    model: str = typer.Argument(..., metavar="MODULE:FACTORY", help="a function returning an nn.Module, e.g. hnfc.examples.naive:make_model"),
    inputs: list[str] = typer.Option([], "--input", "-i", metavar="SHAPE[:DTYPE]",
                                     help=f"one per model input, e.g. 4x16 or 4x16:float32 (standard normal) or 2x8:int64 (uniform in [0, {INT_HIGH})); default: the module's example_inputs()"),
    ranges: list[str] = typer.Option([], "--range", "-r", metavar="NAME=LO:HI", help="declared input domain, by input name or position"),
    output: _Path = typer.Option(..., "--output", "-o", help="the .pt2 file to write (torch.export)"),
    report_path: _Path = typer.Option(None, "--report", help="also write the report: a self-contained HTML page when the name ends in .html, else JSON"),
    options: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="an hnfc option (hnfc.foundation.config.Config field)"),
    seed: int = typer.Option(0, help="seed of the random example inputs"),
) -> None:
    """Optimize MODULE:FACTORY's model and export it as a torch.export .pt2 (loads without hnfc).

    Exit 0 only when the .pt2 (and the report) are written and the exported model runs on the
    example inputs; nothing is written otherwise (both files appear together or not at all)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # numpy's and torch's warnings: not on stderr
        warnings.simplefilter("always")
        try:
            opts = parse_options(options)
            declared = _ranges(ranges)
            writable(output, "--output")
            if report_path is not None:
                writable(report_path, "--report")
                if report_path.resolve() == output.resolve():
                    raise UserError("--report and --output name the same file")
            console = _console()
            with console.status(f"loading {model}"):
                module, example = build_model(model, inputs, seed)
            with console.status("optimizing (trace, saturate, extract, verify against mpmath)"):
                optimized = _run_api(model, lambda: __import__("hnfc").optimize(module, example, input_ranges=declared, **opts))
            if not hasattr(optimized, "program"):  # hnfc.pipeline.Unoptimized: the trace failed
                reason = next((w for w in optimized.report.warnings if w.startswith("trace failed")), "trace failed")
                raise UserError(f"cannot trace {model}: {reason.removeprefix('trace failed: ')}", EXIT_FINDINGS)
            report = optimized.report.to_dict()
            report["warnings"] += [m for m in _hnfc_warnings(caught) if m not in report["warnings"]]
            with console.status(f"exporting {output}"):
                _write_outputs(optimized, example, output, report_path, report)
        except UserError as e:
            _fail(e)
    _report_tables(console, report)
    console.print(f"wrote {output}" + (f" and {report_path}" if report_path else ""))


def writable(path: _Path, what: str) -> None:
    """A path the command may write: its directory exists and it is not itself a directory."""
    if path.is_dir():
        raise UserError(f"cannot write {what} {str(path)!r}: it is a directory (give a file name)")
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {what} {str(path)!r}: directory {str(parent)!r} is not writable")


def _run_api(model: str, call):
    """Run an hnfc API call, mapping its errors onto the exit codes: the model cannot take its
    inputs or does not trace -> 1; bad options, ranges or rules -> 2."""
    import hnfc
    from hnfc.frontend.contract import InputError

    try:
        return call()
    except InputError as e:
        raise UserError(f"{model}: {e}", EXIT_FINDINGS) from None
    except hnfc.FrontendError as e:
        raise UserError(f"cannot trace {model}: {e}", EXIT_FINDINGS) from None
    except ValueError as e:  # the user's mistakes: bad ranges, bad options, unsound or unknown rules
        raise UserError(str(e)) from None


def _hnfc_warnings(caught) -> list[str]:
    import hnfc

    return [str(w.message) for w in caught if issubclass(w.category, hnfc.HnfcWarning)]


def _write_outputs(optimized, example, output: _Path, report_path: _Path | None, report: dict) -> None:
    """Export, check that the exported model runs on the example inputs, render the report, and
    only then move both files into place (temporary files in the target directories, os.replace)."""
    import contextlib

    from hnfc.export import export, write_archive
    from hnfc.foundation.files import atomic_path

    try:
        ep, _ = export(optimized, example)
    except Exception as e:
        raise UserError(f"torch.export could not export the optimized model: {type(e).__name__}: {_first_line(e)}", EXIT_FINDINGS) from None
    try:
        ep.module()(*example)
    except Exception as e:
        raise UserError(f"the exported model fails on the example inputs: {type(e).__name__}: {_first_line(e)}", EXIT_FINDINGS) from None
    text = None
    if report_path is not None and report_path.suffix.lower() in (".html", ".htm"):
        from hnfc.report.html import report_html

        text = report_html(report, None, program=getattr(optimized, "program", None))
    elif report_path is not None:
        text = _json.dumps(report, indent=2, default=str)
    try:
        with contextlib.ExitStack() as stack:
            tmp_model = stack.enter_context(atomic_path(output))
            write_archive(ep, report, tmp_model)
            if report_path is not None:
                stack.enter_context(atomic_path(report_path)).write_text(text)
    except OSError as e:
        raise UserError(f"cannot write {e.filename or output}: {e.strerror or e}") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


@app.command()
def show(
    path: _Path = typer.Argument(..., metavar="MODEL.pt2", help="a .pt2 written by `hnfc optimize` or hnfc.save"),
    nodes: bool = typer.Option(True, help="list every node with its dtype"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Ops, rewrites and per-node dtypes of an exported model (read from the archive's JSON: no
    weight is loaded, so no code in the file can run)."""
    from hnfc.export import read

    _quiet_torch_logs()
    try:
        try:
            if path.is_dir():
                raise UserError(f"{str(path)!r} is a directory, not a .pt2 file")
            saved = read(path)
        except FileNotFoundError:
            raise UserError(f"no such file: {str(path)!r}") from None
        except ValueError as e:
            raise UserError(str(e)) from None
    except UserError as e:
        _fail(e)
    if as_json:
        typer.echo(_json.dumps({"report": saved.report, "nodes": saved.nodes, "dtypes": saved.dtypes()}, indent=2, default=str))
        return
    from rich.table import Table

    console = _console()
    console.print(f"{path}: {len(saved.nodes)} ops, {len(saved.inputs)} input(s), {saved.outputs} output(s)")
    counts: dict[tuple, int] = {}
    for n in saved.nodes:
        key = (n["target"], n["hnf_dtype"] or "-")
        counts[key] = counts.get(key, 0) + 1
    t = Table(title="ops", title_justify="left")
    for col in ("op", "dtype", "count"):
        t.add_column(col)
    for (target, dt), c in sorted(counts.items()):
        t.add_row(target, dt, str(c))
    console.print(t)
    console.print("dtypes: " + (", ".join(f"{d} × {c}" for d, c in sorted(saved.dtypes().items())) or "none recorded (not written by hnfc?)"))
    if nodes:
        t = Table(title="nodes", title_justify="left")
        for col in ("node", "op", "hnf op", "dtype"):
            t.add_column(col)
        for n in saved.nodes:
            t.add_row(n["name"], n["target"], n["hnf_op"] or "-", n["hnf_dtype"] or "-")
        console.print(t)
    if saved.report is not None:
        try:
            _report_tables(console, saved.report)
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # a report hnfc did not write
            _fail(UserError(f"{str(path)!r}: the stored hnfc report is malformed ({type(e).__name__}: {e})"))
    else:
        console.print("no hnfc report in this archive")


@app.command()
def lint(
    model: str = typer.Argument(..., metavar="MODULE:FACTORY", help="a function returning an nn.Module"),
    inputs: list[str] = typer.Option([], "--input", "-i", metavar="SHAPE[:DTYPE]", help="as for `hnfc optimize`"),
    ranges: list[str] = typer.Option([], "--range", "-r", metavar="NAME=LO:HI", help="declared input domain"),
    max_bits: float = typer.Option(8.0, "--max-bits", help="fail on fixable findings predicted to lose more bits than this"),
    strict: bool = typer.Option(False, help="also fail on ill-conditioned nodes no rewrite fixes"),
    options: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="an hnfc option (hnfc.foundation.config.Config field)"),
    seed: int = typer.Option(0, help="seed of the random example inputs"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List numerical hazards and the fix for each; changes nothing. Exit 1 when any fails (CI gate).

    Failing: real hazards (overflow, log of 0, division by 0), and nodes predicted to lose more
    than --max-bits that a verified rewrite fixes. Ill-conditioned nodes without a fix are notes
    (failing with --strict).
    """
    import math
    import warnings

    with warnings.catch_warnings(record=True):  # numpy's and torch's warnings: not on stderr
        warnings.simplefilter("always")
        try:
            if not (math.isfinite(max_bits) and max_bits >= 0):
                raise UserError(f"bad --max-bits {max_bits}: expected a number of bits >= 0 (a NaN or inf would turn the gate off)")
            opts = parse_options(options)
            declared = _ranges(ranges)
            console = _console()
            with console.status(f"loading {model}"):
                module, example = build_model(model, inputs, seed)
            from hnfc.lint import lint as run_lint

            with console.status("analysing (ranges, curvature, rewrites)"):
                result = _run_api(model, lambda: run_lint(module, example, input_ranges=declared, max_bits=max_bits, strict=strict, **opts))
        except UserError as e:
            _fail(e)
    failing = {id(f) for f in result.failing}
    if as_json:
        typer.echo(_json.dumps(result.to_dict(), indent=2, default=str))
    else:
        from rich.markup import escape

        console.print(f"[bold]{escape(model)}[/]: predicted bits lost per node, --max-bits {max_bits:g}")
        for f in result.findings:
            mark = "[bold red]FAIL[/]" if id(f) in failing else "[yellow]note[/]"
            bits = "hazard" if f.bits >= 1000 else f"{f.bits:.1f} bits"
            console.print(f"{mark} {f.kind} at %{f.value} ({f.op}), {bits}: {escape(f.expr)}")
            console.print(f"     why: {escape(f.reason)}")
            if f.fix:
                rules = f" [dim]({escape(', '.join(f.rules))})[/]" if f.rules else ""
                console.print(f"     fix: {escape(f.fix)}{rules}")
        n = len(result.failing)
        console.print(f"{n} failing finding(s), {len(result.findings) - n} note(s)" if result.findings else "no findings")
    if not result.ok:
        raise typer.Exit(EXIT_FINDINGS)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
