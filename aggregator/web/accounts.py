"""The `users` commands: editors' passwords and read-only API tokens.

Terminal input and output only; hashing is in `auth`, storage in
`store.dashboard`. Exit codes follow the CLI's: 2 with one ``error:`` line.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from aggregator.store.dashboard import DashboardStore
from aggregator.web import auth
from aggregator.web.commands import Runtime
from aggregator.web.state import utcnow

MIN_PASSWORD = 8


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def read_password() -> str:
    """Asked twice on a terminal, hidden; the first line of standard input when piped."""
    if sys.stdin.isatty():
        value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return value
    return sys.stdin.readline().rstrip("\r\n")


@click.group()
def users() -> None:
    """Editors who may log in to the dashboard, and their API tokens."""


@users.command("add")
@click.argument("name")
@click.pass_obj
def users_add(obj: Runtime, name: str) -> None:
    """Create the editor NAME or set a new password (asked, or read from standard input).

    A new password ends the editor's open sessions (`DashboardStore.set_password`).
    """
    name = name.strip()
    if not name or len(name) > auth.NAME_LENGTH:
        fail(f"NAME must be 1 to {auth.NAME_LENGTH} characters")
    password = read_password()
    if len(password) < MIN_PASSWORD:
        fail(f"the password must have at least {MIN_PASSWORD} characters")
    created = DashboardStore(obj.store).set_password(name, auth.hash_password(password), utcnow())
    click.echo(f"{'added' if created else 'changed the password of'} {name}")


@users.command("token")
@click.argument("name")
@click.pass_obj
def users_token(obj: Runtime, name: str) -> None:
    """Print a new read-only API token for NAME (send it as `Authorization: Bearer TOKEN`)."""
    token = auth.new_token()
    if not DashboardStore(obj.store).add_token(name, auth.token_hash(token), utcnow()):
        fail(f"no user {name!r} (add one with: users add {name})")
    click.echo(token)


@users.command("revoke")
@click.argument("name")
@click.pass_obj
def users_revoke(obj: Runtime, name: str) -> None:
    """Delete every API token of NAME (scripts using them get 401 from now on)."""
    revoked = DashboardStore(obj.store).revoke_tokens(name)
    if revoked is None:
        fail(f"no user {name!r}")
    click.echo(f"revoked {revoked} token{'' if revoked == 1 else 's'} of {name}")


@users.command("remove")
@click.argument("name")
@click.pass_obj
def users_remove(obj: Runtime, name: str) -> None:
    """Remove the editor NAME: no more logins, API tokens deleted, open sessions end."""
    if not DashboardStore(obj.store).remove_user(name):
        fail(f"no user {name!r}")
    click.echo(f"removed {name}")


def register(main: click.Group) -> None:
    main.add_command(users)
