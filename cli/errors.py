"""The one exit-code policy of every command; only the CLI exits.

====  ==========================================================================
0     done
1     done, but some inputs failed (``--strict``), or every input failed
2     could not start or finish: any ``ArtyLyzeError``, an OSError, a bad option, a bug
130   stopped by SIGINT after a clean stop (143 SIGTERM, 129 SIGHUP: 128 + the signal)
====  ==========================================================================

An error is one line on stderr, with control characters escaped; ``artylyze --debug CMD``
(or ``ARTYLYZE_DEBUG=1``) prints the traceback before it. Stop signals become
:class:`~artylyze.errors.Interrupted` (see :mod:`artylyze.signals`), so the code that is
running stops cleanly before the exit code says so.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors click; its usage errors derive from this
    from typer import TyperException as _UsageError
except ImportError:  # older typer uses click itself
    from click import ClickException as _UsageError

from artylyze.errors import ArtyLyzeError, Interrupted, os_error_text
from artylyze.signals import stop_signals
from artylyze.text import printable

EXIT_INPUTS_FAILED = 1
EXIT_CANNOT = 2
# Whether a cli_errors() is active in this context, and then with --debug or not: the root
# group's handles everything, the commands' own ones (for direct calls) then stand aside.
_ACTIVE: ContextVar[bool | None] = ContextVar("artylyze_cli_errors", default=None)


def fail(message: str, code: int = EXIT_CANNOT) -> NoReturn:
    """Print ``error: message`` (one line) and exit with ``code``."""
    typer.secho(f"error: {printable(message)}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _env_debug() -> bool:
    return os.environ.get("ARTYLYZE_DEBUG", "") not in ("", "0")


@contextmanager
def cli_errors(debug: bool | None = None) -> Iterator[None]:
    """Turn whatever the block raises into the exit-code policy above; ``debug`` (default:
    ``ARTYLYZE_DEBUG``) also prints the traceback. Inside another one it stands aside."""
    if _ACTIVE.get() is not None:
        yield
        return
    token = _ACTIVE.set(_env_debug() if debug is None else debug)
    try:
        with stop_signals():
            yield
    except (typer.Exit, typer.Abort, _UsageError):
        raise
    except Interrupted as e:
        _stopped(e, f"stopped by {e.name}", e.exit_code)
    except KeyboardInterrupt as e:
        _stopped(e, "interrupted", 128 + signal.SIGINT)
    except ArtyLyzeError as e:
        _failed(e, str(e))
    except OSError as e:
        where = f"{os.fsdecode(e.filename)}: " if e.filename else ""
        _failed(e, f"{where}{os_error_text(e)}")
    except Exception as e:  # noqa: BLE001 - a bug still gets the policy's exit code
        _failed(e, f"internal error ({type(e).__name__}: {e}); run with --debug for the "
                "traceback, and please report it")
    finally:
        _ACTIVE.reset(token)


def _traceback(e: BaseException) -> None:
    if _ACTIVE.get():
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)


def _failed(e: BaseException, message: str) -> NoReturn:
    _traceback(e)
    fail(message)


def _stopped(e: BaseException, what: str, code: int) -> NoReturn:
    _traceback(e)
    typer.secho(f"{what}: stopped cleanly, nothing half-written was left; `tag` resumes "
                "where it stopped", err=True, fg=typer.colors.YELLOW)
    raise typer.Exit(code)


class PolicyGroup(TyperGroup):
    """The root command group: every subcommand runs under :func:`cli_errors`, so nothing a
    user can cause ends in a traceback or in an exit code outside the policy."""

    def invoke(self, ctx: typer.Context) -> Any:
        with cli_errors(debug=bool(ctx.params.get("debug"))):
            return super().invoke(ctx)
