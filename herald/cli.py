"""The `herald` command line. Commands are thin: each calls one module that does the work."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from herald.config import Settings, describe
from herald.errors import HeraldError

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Turn expected failures (bad config, unreachable services) into one line and exit 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HeraldError as exc:
            click.echo(f"herald: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(epilog=describe(), context_settings={"max_content_width": 120})
@click.version_option(package_name="herald")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Herald: exact, fast stream analytics for broadcast notifications."""
    ctx.obj = Settings()
