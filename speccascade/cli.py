"""The ``speccascade`` command line (typer + rich).

Every sub-command raises :class:`speccascade.hardware.InputError` (or a pydantic ``ValidationError``) on bad
input; :func:`main` turns those into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from speccascade.errors import InputError
from speccascade.readers import validation_message

from .cli_text import dumps, one_line, safe_lines  # noqa: F401 (one_line: public here too)

from .cli_hardware import app as hardware_app
from .cli_runtime import app as runtime_app
from .cli_predict import register as register_predict
from .cli_analysis import register as register_analysis
from .cli_simulate import register as register_simulate
from .cli_calibrate import register as register_calibrate
from .cli_validate import register as register_validate

app = typer.Typer(
    name="speccascade",
    help="Predict, simulate, execute and calibrate speculative decoding and cascades.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(hardware_app, name="hardware", help="Chip profiles: list, show, probe this machine.")
app.add_typer(runtime_app, name="runtime", help="JAX runtime: train the trio, generate, benchmark strategies.")
register_predict(app)
register_analysis(app)
register_simulate(app)
register_calibrate(app)
register_validate(app)


@app.command("strategies")
def strategies_command(json_output: bool = typer.Option(False, "--json", help="Print the registry as JSON."),
                       markdown: bool = typer.Option(False, "--markdown", help="Print docs/strategies.md's "
                                                                                 "generated block.")) -> None:
    """List the registered strategies: aliases, roles, knobs, pairs and step shapes (the one vocabulary)."""
    from . import strategies as registry
    from .strategies_doc import describe, markdown as markdown_text, shape_lines

    if markdown and json_output:
        raise InputError("give --json or --markdown, not both")
    if markdown:
        typer.echo(markdown_text(), nl=False)
        return
    if json_output:
        typer.echo(dumps([describe(spec) for spec in registry.REGISTRY.values()]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="speccascade strategies (speccascade/strategies.py)")
    for column in ("strategy", "aliases", "roles", "knobs", "pairs", "step shape", "runtime"):
        table.add_column(column)
    for spec in registry.REGISTRY.values():
        table.add_row(*(safe_lines(cell) for cell in (
            spec.name, ", ".join(spec.aliases), ", ".join(spec.roles),
            ", ".join(f"{k.name}={k.default}" for k in spec.knobs),
            ", ".join(f"{p.name}: {p.parameter}" for p in spec.pairs),
            "\n".join(shape_lines(spec)), "yes" if spec.runtime else "-")))
    Console(width=200).print(table)


# optional dependency (top-level module) -> the extra that installs it
EXTRAS = {"jax": "runtime", "jaxlib": "runtime", "flax": "runtime", "optax": "runtime", "safetensors": "runtime",
          "pyarrow": "tables", "transformers": "reference", "tokenizers": "runtime", "hypothesis": "test"}


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit with ``code`` (2: bad input)."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: bad input -> one line and exit 2; a missing optional part -> the extra to install (exit 2);
    anything unexpected -> one 'internal error' line and exit 1 (the traceback only with --debug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        _run(argv)
    except SystemExit:
        raise
    except ModuleNotFoundError as error:
        root = (error.name or "").split(".")[0]
        if root in EXTRAS and not debug:
            fail(f"this needs the optional package '{root}': pip install \"speccascade[{EXTRAS[root]}]\"")
        if debug:
            raise
        fail(f"internal error: {error.__class__.__name__}: {error} (please report; --debug shows the traceback)", 1)
    except Exception as error:  # noqa: BLE001 (the top-level guard)
        if debug:
            raise
        fail(f"internal error: {error.__class__.__name__}: {error} (please report; --debug shows the traceback)", 1)


def _run(argv: list[str]) -> None:
    from speccascade.writers import Transaction

    try:
        with Transaction():  # a failing command leaves none of the files it wrote (speccascade/writers.py)
            code = app(args=argv, standalone_mode=False)
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                raise SystemExit(code)  # typer.Exit(code) comes back as a return value here
    except InputError as error:
        fail(str(error))
    except ValidationError as error:
        fail(validation_message(error))
    except FileNotFoundError as error:
        fail(f"file not found: {error.filename}")
    except (PermissionError, IsADirectoryError, NotADirectoryError) as error:
        fail(f"{error.filename or 'a file'}: {error.strerror or error.__class__.__name__}")
    except OSError as error:
        if error.filename is None:
            raise
        fail(f"{error.filename}: {error.strerror or error.__class__.__name__}")
    except (typer.Abort, KeyboardInterrupt):
        fail("aborted")
    except typer.Exit as exit_:
        raise SystemExit(exit_.exit_code) from None
    except SystemExit:
        raise
    except _usage_errors() as error:  # bad flags or arguments arrive here in non-standalone mode
        fail(error.format_message())


def _usage_errors() -> tuple[type[Exception], ...]:
    """Usage-error classes: typer >= 0.20 vendors click (typer.TyperException); older typer uses click's."""
    classes: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        classes.append(typer.TyperException)
    try:
        import click

        classes.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return tuple(classes)


if __name__ == "__main__":
    main(sys.argv[1:])
