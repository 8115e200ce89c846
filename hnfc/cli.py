"""The `hnfc` command line (typer: subcommands, --help and exit codes for free).

`hnfc example` is the README's main job: trace the bundled naive model, optimize it, print the
IR before and after and the report (bits of error against the mpmath reference).
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
