"""The CLI's one error boundary: an expected failure is one line on stderr and an exit code, never a traceback.

Exit codes, for every command:

- 0: done; for `run` and `publish`, every request was answered with a `Response`.
- 1: a failure: an `Error` or `Blocked` answer (a blocked request is answered,
  but the job produced no output), a bad or unanswered line, a file that could
  not be indexed, a timeout, an unreachable broker.
- 2: a usage or config error: a bad option, a config file that does not
  load, a bus URL that names no bus.

`relaychain -v ...` prints the traceback too. The boundary sits on the group,
so a command added later gets it without doing anything.
"""

from __future__ import annotations

import traceback
from typing import Any

import click

from relaychain.bus.base import BusError
from relaychain.bus.client import AnswerTimeout
from relaychain.buses import BusUrlError
from relaychain.settings import ConfigError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "BadConfig", "BoundaryGroup", "Failed"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Failed(click.ClickException):
    """A command that ran and failed; one line on stderr, exit 1."""

    exit_code = EXIT_FAILED


class BadConfig(click.ClickException):
    """A config or bus URL that cannot be used; exit 2, like a usage error."""

    exit_code = EXIT_USAGE


def _one_line(error: Exception) -> str:
    # YAML and pydantic messages span lines; one failure is one line on stderr.
    return " ".join(str(error).split())


def _expected(error: Exception) -> click.ClickException | None:
    """The one-line message and exit code of a failure a user can meet; None for a bug."""
    if isinstance(error, ConfigError):
        return BadConfig(f"bad config: {_one_line(error)}")
    if isinstance(error, BusUrlError):
        return BadConfig(_one_line(error))
    if isinstance(error, BusError):
        return Failed(f"broker: {_one_line(error)}")
    if isinstance(error, AnswerTimeout):
        return Failed(_one_line(error))
    if isinstance(error, TimeoutError):
        return Failed(f"timed out {_one_line(error)}".rstrip())
    if isinstance(error, OSError):
        return Failed(_one_line(error))
    return None


class BoundaryGroup(click.Group):
    """A click group whose subcommands' exceptions end as one line and an exit code (`-v`: with the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            if ctx.params.get("verbose"):
                click.echo(traceback.format_exc(), err=True, nl=False)
            expected = _expected(error)
            if expected is not None:
                raise expected from None
            raise Failed(
                f"internal error: {type(error).__name__}: {_one_line(error)} (`relaychain -v` shows the traceback)"
            ) from None
