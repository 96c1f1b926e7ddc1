"""The ``speccascade`` command line (typer + rich).

Every sub-command raises :class:`speccascade.hardware.InputError` (or a pydantic ``ValidationError``) on bad
input; :func:`main` turns those into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from speccascade.hardware.errors import InputError
from speccascade.hardware.registry import validation_message

from .cli_hardware import app as hardware_app
from .cli_predict import register as register_predict

app = typer.Typer(
    name="speccascade",
    help="Predict, simulate, execute and calibrate speculative decoding and cascades.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(hardware_app, name="hardware", help="Chip profiles: list, show, probe this machine.")
register_predict(app)


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except InputError as error:
        fail(str(error))
    except ValidationError as error:
        fail(validation_message(error))
    except FileNotFoundError as error:
        fail(f"file not found: {error.filename}")
    except (typer.Abort, KeyboardInterrupt):
        fail("aborted")
    except SystemExit:
        raise
    except Exception as error:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(error, click.exceptions.ClickException):
            fail(error.format_message())
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
