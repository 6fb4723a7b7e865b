"""The `specwise` command. Each subcommand lives in its own module and only parses, calls and renders."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from specwise import __version__
from specwise.errors import SpecwiseError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130   # what a shell reports for Ctrl-C; finished work is kept

app = typer.Typer(
    name="specwise",
    help="Does speculative decoding pay off on your vLLM deployment? Plan, measure, decide, watch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Bad input becomes one line on stderr naming the field and the fix, and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SpecwiseError as exc:
            err_console.print(f"[bold red]error:[/] {exc.line()}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        print(f"specwise {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """specwise: speculative decoding, measured."""


from specwise.cli import plan as _plan  # noqa: E402,F401  (registers the command)
from specwise.cli import serve as _serve  # noqa: E402,F401
from specwise.cli import bench as _bench  # noqa: E402,F401
from specwise.cli import run as _run  # noqa: E402,F401
from specwise.cli import monitor as _monitor  # noqa: E402,F401
