"""The `specwise` command. Each subcommand lives in its own module and only parses, calls and renders."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from specwise import __version__
from specwise.errors import SpecwiseError, shown, validation_error

EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130   # what a shell reports for Ctrl-C; finished work is kept

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def say_error(text: str) -> None:
    """One line on stderr: newlines in a quoted value would break it, and the text is never read as markup."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", " ".join(text.split())))


def as_input_error(exc: BaseException) -> SpecwiseError | None:
    """What went wrong outside specwise (the input, a file, the environment, a server), as one error; None for
    a bug. Validation where input is read names the flag; this is the net for what no check foresaw.
    Modules are looked up, not imported: an exception of a library that was never loaded cannot occur."""
    if isinstance(exc, SpecwiseError):
        return exc
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "system"
        return SpecwiseError(shown(str(where)), exc.strerror or str(exc), "check the path, its permissions and "
                             "the free space")
    if isinstance(exc, UnicodeDecodeError):
        return SpecwiseError("input", "a file is not UTF-8 text", "save it as UTF-8")
    if isinstance(exc, UnicodeEncodeError):
        return SpecwiseError("input", f"{shown(exc.object[exc.start:exc.end])} cannot be sent: not ASCII",
                             "use ASCII characters only")
    if isinstance(exc, RecursionError):
        return SpecwiseError("input", "nested too deeply", "flatten it")
    if isinstance(exc, MemoryError):
        return SpecwiseError("input", "too large for this machine's memory", "give a smaller input")
    pydantic, httpx, yaml = (sys.modules.get(name) for name in ("pydantic", "httpx", "yaml"))
    if pydantic and isinstance(exc, pydantic.ValidationError):
        return validation_error(exc, exc.title, "check the input")
    if httpx and isinstance(exc, httpx.InvalidURL):
        return SpecwiseError("--url", str(exc), "write it like http://127.0.0.1:8000")
    if httpx and isinstance(exc, httpx.HTTPError):
        return SpecwiseError("server", f"{type(exc).__name__}: {exc}", "check that the server is up and reachable")
    if yaml and isinstance(exc, yaml.YAMLError):
        return SpecwiseError("YAML", " ".join(str(exc).split()), "fix the syntax")
    return None


def _is_usage(exc: BaseException) -> bool:
    """click's usage errors (missing or unparsable flags), which typer vendors from 0.2x on: by shape, not class."""
    return isinstance(getattr(exc, "exit_code", None), int) and callable(getattr(exc, "format_message", None))


class OneLineErrors(TyperGroup):
    """The CLI's edge: whatever a command meets — bad flags, files, servers, a bug — ends as one line on stderr
    and an exit code (2: input, 1: internal, 130: Ctrl-C); `specwise --debug` shows the traceback instead."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug") or _is_usage(exc):
                raise
            error = as_input_error(exc)
            if error is None:
                say_error(f"internal error: {type(exc).__name__}: {str(exc)[:200]}; rerun with --debug for the "
                          "traceback and report it")
                sys.exit(EXIT_INTERNAL)
            say_error(error.line())
            sys.exit(EXIT_BAD_INPUT)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:  # end of input at a prompt
            say_error("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            if not _is_usage(exc):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `specwise`: the help, as before
                exc.show()  # type: ignore[attr-defined]
            else:
                ctx = getattr(exc, "ctx", None)
                where = ctx.command_path if ctx else "specwise"
                say_error(f"{exc.format_message().rstrip('.')}; see `{where} --help`")  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="specwise",
    cls=OneLineErrors,
    help="Does speculative decoding pay off on your vLLM deployment? Plan, measure, decide, watch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"specwise {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit."),
         debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error instead of one line.")
         ) -> None:  # --debug is read where errors are caught: OneLineErrors.invoke
    """specwise: speculative decoding, measured."""


from specwise.cli import plan as _plan  # noqa: E402,F401  (registers the command)
from specwise.cli import serve as _serve  # noqa: E402,F401
from specwise.cli import bench as _bench  # noqa: E402,F401
from specwise.cli import run as _run  # noqa: E402,F401
from specwise.cli import monitor as _monitor  # noqa: E402,F401
from specwise.cli import analyze as _analyze  # noqa: E402,F401
from specwise.cli import tune as _tune  # noqa: E402,F401
