"""Command line: argument parsing and terminal output only; the work is in `pipeline`.

Every command exits 0 on success, 1 when the work ran but part of it failed
(e.g. a feed could not be fetched), 2 with a one-line ``error:`` message on
bad input (configuration, arguments, files, an unreachable database), and 3
when another run holds the lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import click
import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from aggregator import config, opml
from aggregator.config import ConfigError, Settings
from aggregator.dedupe import DedupeInputError, dedupe, explain, gold_report, load_rows
from aggregator.deliver import write_file
from aggregator.digest.records import SCHEMA, cluster_record
from aggregator.durations import parse_duration
from aggregator.fetch import UnsafeURLError, check_url
from aggregator.fetch.discover import DiscoveryError, discover_feeds
from aggregator.mail.commands import register as register_mail
from aggregator.mail.sender import SmtpConfigError
from aggregator.models import Feed, FetchResult, Outlet
from aggregator.parse.normalize import describe
from aggregator.pipeline import DigestRun, FetchSummary, Pipeline, utcnow
from aggregator.schedule import EmbeddedServer, Service
from aggregator.store import Store
from aggregator.terminal import WAIT_OPTION, fail, run_lock, table, when_option
from aggregator.web.accounts import register as register_users
from aggregator.web.commands import application

DEFAULT_CONFIG = "aggregator.toml"


def _without_password(url: str) -> str:
    """A database URL fit for a terminal or a cron mail: "postgresql://news:***@db/news".

    By pattern, not by parsing: the URL shown may be the malformed one.
    """
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


class Context:
    """Settings and a lazily opened store, shared by the subcommands of one invocation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            try:
                self._store = Store(self.settings.database_url)
            except (SQLAlchemyError, RuntimeError) as exc:
                fail(f"database {_without_password(self.settings.database.url)}: {describe(exc)}")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def pipeline(self) -> Pipeline:
        pipeline = Pipeline(self.settings, self.store)
        pipeline.sync_config()
        return pipeline


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="AGGREGATOR_CONFIG",
    help=f"TOML configuration (default: ./{DEFAULT_CONFIG} if present, else built-in defaults).",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v: each fetch, -vv: debug).")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Watch news feeds, cluster the stories several outlets report, write digests."""
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if config_path is None and Path(DEFAULT_CONFIG).exists():
            config_path = Path(DEFAULT_CONFIG)
        settings = config.load(config_path) if config_path else config.default()
    except ConfigError as exc:
        fail(str(exc))
    ctx.obj = Context(settings)
    ctx.call_on_close(ctx.obj.close)


# -- fetch ------------------------------------------------------------------


@contextmanager
def _progress(total: int) -> Iterator[Callable[[Feed, FetchResult], None] | None]:
    """A progress bar on a terminal; nothing when output goes to a file or a pipe."""
    if total == 0 or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label="fetching", file=sys.stderr) as bar:
        yield lambda _feed, _result: bar.update(1)


def _fetch(obj: Context, all_feeds: bool) -> FetchSummary:
    pipeline = obj.pipeline()
    count = len(
        obj.store.feeds(include_disabled=False) if all_feeds else obj.store.due_feeds(utcnow())
    )
    with _progress(count) as progress:
        summary = asyncio.run(pipeline.fetch(all_feeds=all_feeds, progress=progress))
    clustered = pipeline.cluster()
    for url, error in summary.failures:
        click.echo(f"failed: {url}: {error}", err=True)
    click.echo(f"{summary.line()}; {clustered} clustered")
    return summary


@main.command()
@click.option("--all", "all_feeds", is_flag=True, help="Fetch every enabled feed, due or not.")
@WAIT_OPTION
@click.pass_obj
def fetch(obj: Context, all_feeds: bool, wait: bool) -> None:
    """Fetch feeds that are due, store new and updated entries, cluster them.

    Exits 1 when any feed failed (the others are still stored), 3 when another
    run is in progress.
    """
    with run_lock(obj.store, wait):
        summary = _fetch(obj, all_feeds)
    sys.exit(1 if summary.failed else 0)


# -- digest -----------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--since", help="Start of the period: ISO date/time or relative (24h, 7d).")
@click.option("--until", help="End of the period (default: now).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(config.DIGEST_FORMATS),
    help="Write only this format (default: the digest's configured formats).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (needs --format unless the digest has a single format).",
)
@click.pass_obj
def digest(
    obj: Context, name: str, since: str | None, until: str | None, fmt: str | None, out: Path | None
) -> None:
    """Write the digest NAME for a period (default: its configured period ending now)."""
    try:
        settings = obj.settings.digest(name)
    except ConfigError as exc:
        fail(str(exc))
    now = utcnow()
    end = when_option(until, "--until", now) or now
    start = when_option(since, "--since", now) or end - settings.period_delta
    if start >= end:
        fail(f"--since ({start:%Y-%m-%d %H:%M}Z) must be before --until ({end:%Y-%m-%d %H:%M}Z)")
    formats = [fmt] if fmt else None
    if out is not None and fmt is None and len(settings.formats) != 1:
        fail("--out needs --format when the digest has several formats")
    pipeline = obj.pipeline()
    try:
        run = pipeline.write_digest(settings, start, end, formats=formats, out=out)
    except OSError as exc:
        fail(f"cannot write the digest: {exc}")
    for path in run.files:
        click.echo(str(path))


# -- run ----------------------------------------------------------------------


@main.command()
@click.option("--once", is_flag=True, help="One pass, for cron: fetch, cluster, write due digests.")
@WAIT_OPTION
@click.pass_obj
def run(obj: Context, once: bool, wait: bool) -> None:
    """Fetch due feeds, cluster, write every digest whose period is due, and mail it.

    A digest period already written is not written again, and nobody is mailed
    a period twice, so running this twice in the same period does nothing new.
    Exits 1 when a feed or a delivery failed, 3 when another run is in progress.
    """
    if not once:
        fail("run needs --once (call it from cron)")
    with run_lock(obj.store, wait):
        summary = _fetch(obj, all_feeds=False)
        pipeline = obj.pipeline()
        runs = pipeline.write_due_digests()
        _report_digests(runs)
        try:
            mailed = pipeline.send_mail()
        except SmtpConfigError as exc:
            fail(str(exc))
    for sent in mailed:
        click.echo(sent.line())
    failed = summary.failed or any(not sent.ok for sent in mailed)
    sys.exit(1 if failed else 0)


def _report_digests(runs: list[DigestRun]) -> None:
    for done in runs:
        click.echo(
            f"digest {done.name} {done.start:%Y-%m-%d %H:%M}Z – {done.end:%Y-%m-%d %H:%M}Z: "
            f"{done.clusters} stories"
        )
        for path in done.files:
            click.echo(f"  {path}")
    if not runs:
        click.echo("no digest due")


@main.command()
@click.option("--since", required=True, help="ISO date/time or relative (24h, 7d).")
@WAIT_OPTION
@click.pass_obj
def recluster(obj: Context, since: str, wait: bool) -> None:
    """Rebuild the clusters of entries published since WHEN, e.g. after a threshold change."""
    start = when_option(since, "--since", utcnow())
    assert start is not None
    with run_lock(obj.store, wait):
        freed, assigned = obj.pipeline().recluster(start)
    click.echo(f"{freed} entries taken out of their clusters, {assigned} clustered again")


@main.command()
@click.option("--web", "with_web", is_flag=True, help="Also serve the dashboard (web.host:port).")
@click.pass_obj
def serve(obj: Context, with_web: bool) -> None:
    """Run as a service: fetch due feeds continuously, write digests on their schedules.

    Stops on SIGTERM or SIGINT after running fetches finish (bounded by
    serve.shutdown_grace); a restart resumes from the stored schedule.
    """
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    settings = obj.settings
    web = None
    if with_web:
        web = EmbeddedServer(
            uvicorn.Config(
                application(settings, obj.store), host=settings.web.host, port=settings.web.port
            )
        )
    service = Service(
        obj.pipeline(),
        poll_seconds=parse_duration(settings.serve.poll_interval).total_seconds(),
        grace_seconds=parse_duration(settings.serve.shutdown_grace).total_seconds(),
        web=web,
    )
    asyncio.run(service.run())


# -- dedupe ---------------------------------------------------------------------


@main.command("dedupe")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--granularity",
    type=click.Choice(["event", "story"]),
    help="event: one news event per cluster (default); story: related events together.",
)
@click.option("--gold", is_flag=True, help="Score against the file's `story` column.")
@click.option(
    "--explain", "show_explain", is_flag=True, help="Print why each entry is where it is."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON to this file."
)
@click.pass_obj
def dedupe_command(
    obj: Context,
    file: Path,
    granularity: str | None,
    gold: bool,
    show_explain: bool,
    out: Path | None,
) -> None:
    """Cluster the entries of a JSONL or CSV file (id,title,summary,url,outlet,published).

    Prints the clusters as JSON (the digest's `clusters` structure, entries
    carrying their input id); with --gold or --explain prints the report
    instead and writes the JSON only with --out.
    """
    try:
        rows = load_rows(file)
    except DedupeInputError as exc:
        fail(str(exc))
    cluster_settings = obj.settings.cluster
    if granularity:
        cluster_settings = cluster_settings.model_copy(update={"granularity": granularity})
    clusters = dedupe(rows, cluster_settings)
    document = {"schema": SCHEMA, "clusters": [cluster_record(c) for c in clusters]}
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if out is not None:
        write_file(out, text)
    elif not (gold or show_explain):
        click.echo(text, nl=False)
    if show_explain:
        click.echo(explain(clusters))
    if gold:
        click.echo(gold_report(rows, clusters, cluster_settings))


# -- feeds ----------------------------------------------------------------------


@main.group()
def feeds() -> None:
    """Manage feeds in the database (in addition to those in the configuration)."""


def _add(obj: Context, url: str, outlet: Outlet, source: str) -> bool:
    try:
        check_url(url, allow_private=obj.settings.fetch.allow_private_addresses)
    except UnsafeURLError as exc:
        fail(f"{url}: {exc}")
    interval = int(obj.settings.fetch.interval_delta.total_seconds())
    _, new = obj.store.add_feed(url, outlet, source=source, interval_seconds=interval, now=utcnow())
    return new


def _discover(obj: Context, url: str, pick: int | None) -> str:
    """The feed to add for `url`: itself if it is a feed, else one its page links to."""
    try:
        found = asyncio.run(discover_feeds(url, obj.settings.fetch))
    except DiscoveryError as exc:
        fail(str(exc))
    if not found:
        fail(f"{url}: no feed found (neither linked from the page nor at the usual paths)")
    if len(found) == 1 and pick is None:
        return found[0].url
    for number, feed in enumerate(found, 1):
        click.echo(f"{number}. {feed.url}" + (f" ({feed.title})" if feed.title else ""), err=True)
    if pick is None:
        if not sys.stdin.isatty():
            fail(f"{url}: {len(found)} feeds found; choose one with --pick N")
        pick = click.prompt("Which feed?", type=click.IntRange(1, len(found)), err=True)
    if not 1 <= pick <= len(found):
        fail(f"--pick: choose 1 to {len(found)}")
    return found[pick - 1].url


@feeds.command("add")
@click.argument("url")
@click.option("--outlet", help="Outlet name (default: the URL's host name).")
@click.option("--pick", type=int, help="When the page offers several feeds, add the N-th.")
@click.option("--no-discover", is_flag=True, help="Add URL as it is, without checking it.")
@click.pass_obj
def feeds_add(
    obj: Context, url: str, outlet: str | None, pick: int | None, no_discover: bool
) -> None:
    """Add a feed, or a site's home page whose feed links are discovered.

    The feed is fetched at the next `fetch` or `run --once`.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        fail(f"{url}: not an http(s) URL")
    try:
        check_url(url, allow_private=obj.settings.fetch.allow_private_addresses)
    except UnsafeURLError as exc:
        fail(f"{url}: {exc}")
    feed_url = url if no_discover else _discover(obj, url, pick)
    new = _add(obj, feed_url, Outlet.for_feed(url, outlet), "cli")
    click.echo(f"{'added' if new else 'already known'}: {feed_url}")


@feeds.command("enable")
@click.argument("url")
@click.pass_obj
def feeds_enable(obj: Context, url: str) -> None:
    """Re-arm a disabled or failing feed: it is fetched at the next run, errors forgotten."""
    obj.pipeline()
    if not obj.store.set_enabled(url, True, reason=None, now=utcnow()):
        fail(f"{url}: no such feed (see `feeds list`)")
    click.echo(f"enabled: {url}")


@feeds.command("disable")
@click.argument("url")
@click.option("--reason", default="disabled by user", show_default=True)
@click.pass_obj
def feeds_disable(obj: Context, url: str, reason: str) -> None:
    """Stop fetching a feed; its entries stay."""
    obj.pipeline()
    if not obj.store.set_enabled(url, False, reason=reason, now=utcnow()):
        fail(f"{url}: no such feed (see `feeds list`)")
    click.echo(f"disabled: {url}")


@feeds.command("list")
@click.pass_obj
def feeds_list(obj: Context) -> None:
    """List every feed with its outlet."""
    obj.pipeline()
    for feed in obj.store.feeds():
        flag = " (disabled)" if feed.disabled else ""
        click.echo(f"{feed.outlet}\t{feed.url}{flag}")


@feeds.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def feeds_import(obj: Context, file: Path) -> None:
    """Import the feeds of an OPML file (folders become outlets)."""
    try:
        subscriptions = opml.read(file.read_bytes())
    except opml.OPMLError as exc:
        fail(f"{file}: {exc}")
    added = known = refused = 0
    for sub in subscriptions:
        try:
            check_url(sub.url, allow_private=obj.settings.fetch.allow_private_addresses)
        except UnsafeURLError as exc:
            click.echo(f"refused: {sub.url}: {exc}", err=True)
            refused += 1
            continue
        outlet = Outlet.for_feed(sub.url, sub.outlet)
        outlet = Outlet(outlet.name, home_url=sub.home_url)
        if _add(obj, sub.url, outlet, "opml"):
            added += 1
        else:
            known += 1
    click.echo(f"{added} added, {known} already known, {refused} refused")
    if refused:
        sys.exit(1)


@feeds.command("export")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@click.pass_obj
def feeds_export(obj: Context, out: Path | None) -> None:
    """Export every feed as OPML 2.0."""
    obj.pipeline()
    text = opml.write(
        [opml.Subscription(url=f.url, outlet=f.outlet, title=f.title) for f in obj.store.feeds()]
    )
    if out is None:
        click.echo(text, nl=False)
    else:
        write_file(out, text)


# -- status ---------------------------------------------------------------------


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds // size}{unit}"
            break
    else:
        text = f"{seconds}s"
    return f"in {text}" if future else f"{text} ago"


@main.command()
@click.pass_obj
def status(obj: Context) -> None:
    """A table of feeds: last fetch, last status, entries, consecutive errors, next fetch."""
    obj.pipeline()
    now = utcnow()
    rows = []
    for row in obj.store.feed_status():
        feed = row.feed
        state = feed.last_status or "new"
        if feed.disabled:
            state = f"disabled: {feed.disabled_reason or 'by user'}"
        elif feed.last_error:
            state = f"{state}: {feed.last_error}"
            if feed.failing_since is not None:
                state += f" (failing since {_ago(feed.failing_since, now)})"
        rows.append(
            [
                feed.outlet,
                feed.url if len(feed.url) <= 60 else feed.url[:59] + "…",
                _ago(feed.last_fetched_at, now),
                state,
                str(row.entries),
                str(feed.consecutive_errors),
                "-" if feed.disabled else _ago(feed.next_fetch_at, now),
            ]
        )
    headers = ["outlet", "feed", "last fetch", "status", "entries", "errors", "next fetch"]
    click.echo(table(headers, rows))


register_mail(main)
register_users(main)
