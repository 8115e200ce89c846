"""The `hnfc` command line (typer: subcommands, --help and exit codes for free).

`hnfc example` is the README's main job: trace the bundled naive model, optimize it, print the
IR before and after and the report (bits of error against the mpmath reference).
`hnfc optimize` exports an optimized model to .pt2, `hnfc show` prints what is in one, `hnfc lint`
lists a model's numerical hazards and exits non-zero on failing ones (a CI gate).
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="hnfc: a numerical-stability compiler for PyTorch.")


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
    """Check every rule of PACK (sympy proof and sampling against mpmath); exit 1 if any is refused."""
    from hnfc.rewrites.check import check_pack_cli

    raise typer.Exit(check_pack_cli(pack, samples=samples, seed=seed))


# ---------------------------------------------------------------------------------------------
# optimize / show / lint (issue #7). User errors print one line "error: ..." on stderr and exit 2
# (bad arguments, a module that does not import, a missing file) or 1 (the model itself failed);
# `lint` exits 1 when it finds failing hazards. No tracebacks for user errors.

import json as _json
import sys as _sys
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


class UserError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _fail(e: UserError):
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(e))}")
    raise typer.Exit(e.code)


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

    g = torch.Generator().manual_seed(seed)
    out = []
    for spec in specs:
        shape, name = parse_input_spec(spec)
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
    """--set KEY=VALUE (Config fields; VALUE read as JSON, else a string); unknown keys are errors."""
    import dataclasses

    from hnfc.config import Config

    known = {f.name for f in dataclasses.fields(Config)}
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise UserError(f"bad --set {pair!r}: expected KEY=VALUE")
        if key not in known:
            raise UserError(f"unknown option {key!r}; known options: {', '.join(sorted(known))}")
        try:
            out[key] = _json.loads(value)
        except ValueError:
            out[key] = value
    try:
        Config.from_options(out)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad --set: {e}") from None
    return out


def load_factory(target: str):
    """'package.module:factory' or 'path/to/file.py:factory' -> (factory, module)."""
    from hnfc._imports import import_attr

    if not all(target.rpartition(":")):  # MODULE, ':' and FACTORY; checked here in the CLI's words
        raise UserError(f"bad model {target!r}: expected MODULE:FACTORY, like hnfc.examples.naive:make_model")
    if "" not in _sys.path and "." not in _sys.path:
        _sys.path.insert(0, "")  # like `python -m`: modules in the current directory import
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
        inputs = own()
        inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
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

    if report.get("rewrites"):
        t = Table(title="rewrites", title_justify="left")
        for col in ("at", "rules", "before", "after"):
            t.add_column(col, overflow="fold")
        for r in report["rewrites"]:
            t.add_row(",".join(f"%{v}" for v in r["values"]), ", ".join(r["rules"]), r["before"], r["after"])
        console.print(t)
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
    options: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="an hnfc option (hnfc.config.Config field)"),
    seed: int = typer.Option(0, help="seed of the random example inputs"),
) -> None:
    """Optimize MODULE:FACTORY's model and export it as a torch.export .pt2 (loads without hnfc)."""
    try:
        opts = parse_options(options)
        declared = _ranges(ranges)
        if output.parent and not output.parent.exists():
            raise UserError(f"cannot write {str(output)!r}: directory {str(output.parent)!r} does not exist")
        if report_path is not None and report_path.parent and not report_path.parent.exists():
            raise UserError(f"cannot write {str(report_path)!r}: directory {str(report_path.parent)!r} does not exist")
        console = _console()
        with console.status(f"loading {model}"):
            module, example = build_model(model, inputs, seed)
        import warnings

        import hnfc
        from hnfc.export import save

        with console.status("optimizing (trace, saturate, extract, verify against mpmath)"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", hnfc.HnfcWarning)
            try:
                optimized = hnfc.optimize(module, example, input_ranges=declared, **opts)
            except ValueError as e:  # the user's mistakes: bad ranges, bad options
                raise UserError(str(e)) from None
        with console.status(f"exporting {output}"):
            try:
                save(optimized, output, example)
            except Exception as e:
                raise UserError(f"torch.export could not export the optimized model: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", EXIT_FINDINGS) from None
        report = optimized.report.to_dict()
        for w in caught:
            if str(w.message) not in report["warnings"]:
                report["warnings"].append(str(w.message))
        if report_path is not None and report_path.suffix.lower() in (".html", ".htm"):
            from hnfc.htmlreport import report_html

            report_html(report, report_path, program=getattr(optimized, "program", None), example_inputs=example, input_ranges=declared)
        elif report_path is not None:
            report_path.write_text(_json.dumps(report, indent=2, default=str))
    except UserError as e:
        _fail(e)
    _report_tables(console, report)
    console.print(f"wrote {output}" + (f" and {report_path}" if report_path else ""))


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
        _report_tables(console, saved.report)
    else:
        console.print("no hnfc report in this archive")


@app.command()
def lint(
    model: str = typer.Argument(..., metavar="MODULE:FACTORY", help="a function returning an nn.Module"),
    inputs: list[str] = typer.Option([], "--input", "-i", metavar="SHAPE[:DTYPE]", help="as for `hnfc optimize`"),
    ranges: list[str] = typer.Option([], "--range", "-r", metavar="NAME=LO:HI", help="declared input domain"),
    max_bits: float = typer.Option(8.0, "--max-bits", help="fail on fixable findings predicted to lose more bits than this"),
    strict: bool = typer.Option(False, help="also fail on ill-conditioned nodes no rewrite fixes"),
    options: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="an hnfc option (hnfc.config.Config field)"),
    seed: int = typer.Option(0, help="seed of the random example inputs"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List numerical hazards and the fix for each; changes nothing. Exit 1 when any fails (CI gate).

    Failing: real hazards (overflow, log of 0, division by 0), and nodes predicted to lose more
    than --max-bits that a verified rewrite fixes. Ill-conditioned nodes without a fix are notes
    (failing with --strict).
    """
    try:
        opts = parse_options(options)
        declared = _ranges(ranges)
        console = _console()
        with console.status(f"loading {model}"):
            module, example = build_model(model, inputs, seed)
        import hnfc
        from hnfc.lint import lint as run_lint

        with console.status("analysing (ranges, curvature, rewrites)"):
            try:
                result = run_lint(module, example, input_ranges=declared, max_bits=max_bits, strict=strict, **opts)
            except hnfc.FrontendError as e:
                raise UserError(f"cannot trace {model}: {e}", EXIT_FINDINGS) from None
            except ValueError as e:
                raise UserError(str(e)) from None
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
