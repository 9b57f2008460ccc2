"""``personarec auth ...``: make the credentials the API checks (see :mod:`personarec.serve.auth`)."""

from __future__ import annotations

from typing import Annotated

import typer

from personarec.cli_common import ConfigOption, RunDirOption, SetOption, resolve_config

app = typer.Typer(
    help="API credentials: service keys for the application backend, token secrets, user/admin tokens.",
    no_args_is_help=True,
)


@app.command("new-key")
def new_key() -> None:
    """Print a new service key (give it to the application backend) and its SHA-256 digest (put the
    digest in serve.auth.service_key_sha256; the key itself never goes in the config)."""
    from personarec.serve.auth import hash_key, new_service_key

    key = new_service_key()
    typer.echo(f"service key (send as X-API-Key): {key}")
    typer.echo(f'config line: [serve.auth] service_key_sha256 = ["{hash_key(key)}"]')


@app.command("new-secret")
def new_secret() -> None:
    """Print a new HMAC secret for user/admin tokens; export it as PERSONAREC_JWT_SECRET on every
    API host (and on whatever issues tokens to your users)."""
    from personarec.serve.auth import JWT_SECRET_ENV, new_jwt_secret

    typer.echo(f"export {JWT_SECRET_ENV}={new_jwt_secret()}")


@app.command("token")
def token(
    user: Annotated[str, typer.Option("--user", "-u", help="The user id the token is for (its `sub`); an operator's id with --admin.")],
    admin: Annotated[bool, typer.Option("--admin", help="Add the admin scope: every user, every endpoint.")] = False,
    ttl: Annotated[float, typer.Option("--ttl", help="Lifetime in seconds.")] = 3600.0,
    config: ConfigOption = None,
    run_dir: RunDirOption = None,
    set_: SetOption = None,
) -> None:
    """Mint a token signed with the HMAC secret in PERSONAREC_JWT_SECRET (for development and
    support; in production your identity provider or backend issues user tokens)."""
    from personarec.serve.auth import Authenticator
    from personarec.serve.config import ServeConfig

    cfg = resolve_config(config, set_, run_dir=run_dir)
    auth_config = cfg.section("serve", ServeConfig).auth  # type: ignore[attr-defined]
    typer.echo(Authenticator(auth_config.model_copy(update={"mode": "off"})).mint(user, admin=admin, ttl_s=ttl))
