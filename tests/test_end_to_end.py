"""The whole product from the command line: sample feeds served on loopback -> digests.

Runs the CLI in-process against a real HTTP server and a real database (SQLite,
and PostgreSQL when AGGREGATOR_TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import json
import mimetypes
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import feedparser
import pytest
from click.testing import CliRunner, Result
from configfile import write_config
from feedserver import FeedServer
from mailsetup import loopback_smtp
from smtpserver import SmtpServer

from aggregator.cli import main
from aggregator.store import Store

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "config" / "sample"
LABELS: dict[str, dict[str, str]] = json.loads(
    (ROOT / "tests" / "fixtures" / "sample_stories.json").read_text(encoding="utf-8")
)


def _content_type(path: Path) -> str:
    if path.suffix == ".json":
        return "application/feed+json"
    if path.suffix == ".atom":
        return "application/atom+xml"
    return mimetypes.guess_type(path.name)[0] or "application/xml"


@pytest.fixture
def sample_site(feed_server: FeedServer, tmp_path: Path, database_url: str) -> Path:
    """The bundled sample configuration, its feeds served over HTTP on 127.0.0.1."""
    sample = tomllib.loads((ROOT / "config" / "sample.toml").read_text(encoding="utf-8"))
    for outlet in sample["outlets"]:
        served = []
        for feed in outlet["feeds"]:
            source = ROOT / "config" / feed
            served.append(
                feed_server.add(
                    f"/{source.name}",
                    source.read_bytes(),
                    content_type=_content_type(source),
                    etag=f'"{source.stat().st_size}"',
                )
            )
        outlet["feeds"] = served
    sample["database"] = {"url": database_url}
    sample["fetch"] = {"allow_private_addresses": True}
    for digest in sample["digests"]:
        digest["output_dir"] = str(tmp_path / "digests")
    return write_config(tmp_path / "sample.toml", sample)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def digest_json(result: Result) -> dict[str, Any]:
    (path,) = [
        line.strip() for line in result.output.splitlines() if line.strip().endswith(".json")
    ]
    return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def label(entry: dict[str, Any]) -> str:
    for labels in LABELS.values():
        if entry["id"] in labels:
            return labels[entry["id"]]
    raise AssertionError(f"entry {entry['id']} is not labelled in sample_stories.json")


def test_run_once_groups_the_sample_stories_without_mixing_events(sample_site: Path) -> None:
    result = cli("--config", sample_site, "run", "--once")
    assert result.exit_code == 0, result.output
    document = digest_json(result)
    assert document["schema"] == "aggregator.digest/1"

    labelled = sum(len(labels) for labels in LABELS.values())
    entries = [e for c in document["clusters"] for e in c["entries"]]
    assert len(entries) == labelled
    for cluster in document["clusters"]:
        events = {label(e) for e in cluster["entries"]}
        assert len(events) == 1, f"cluster {cluster['title']!r} mixes {sorted(events)}"

    # Cross-language matching is not expected: an event counts once per language.
    language = {
        outlet["name"]: outlet["language"]
        for outlet in tomllib.loads(sample_site.read_text(encoding="utf-8"))["outlets"]
    }
    outlets_per_event: dict[tuple[str, str], set[str]] = defaultdict(set)
    for entry in entries:
        outlets_per_event[label(entry), language[entry["outlet"]]].add(entry["outlet"])
    clusters_per_event: dict[tuple[str, str], int] = defaultdict(int)
    for cluster in document["clusters"]:
        first = cluster["entries"][0]
        clusters_per_event[label(first), language[first["outlet"]]] += 1
    shared = [event for event, outlets in outlets_per_event.items() if len(outlets) >= 3]
    assert len(shared) >= 4, "the sample should hold stories reported by several outlets"
    for event in shared:
        assert clusters_per_event[event] == 1, f"{event} split into {clusters_per_event[event]}"

    # Links are shown without tracking parameters (the sample's feeds carry utm_*, wt_zmc).
    assert not [e["url"] for e in entries if "utm_" in e["url"] or "wt_zmc" in e["url"]]

    ranked = [len(c["outlets"]) for c in document["clusters"]]
    assert ranked == sorted(ranked, reverse=True)
    assert document["clusters"][0]["entries"][0]["url"].startswith("http")


def test_every_format_is_written_and_the_atom_digest_is_valid(sample_site: Path) -> None:
    result = cli("--config", sample_site, "run", "--once")
    paths = [Path(line.strip()) for line in result.output.splitlines() if line.startswith("  ")]
    assert {p.suffix for p in paths} == {".html", ".md", ".txt", ".json", ".atom"}
    atom = feedparser.parse(next(p for p in paths if p.suffix == ".atom").read_bytes())
    assert atom.bozo == 0 and atom.version == "atom10"
    assert atom.entries
    html = next(p for p in paths if p.suffix == ".html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()


def test_a_second_run_writes_nothing_and_duplicates_nothing(
    sample_site: Path, feed_server: FeedServer, database_url: str
) -> None:
    assert cli("--config", sample_site, "run", "--once").exit_code == 0
    store = Store(database_url)
    before = len(store.clusters_between(*_all_time()))
    counts = {row.feed.url: row.entries for row in store.feed_status()}

    second = cli("--config", sample_site, "fetch", "--all")
    assert second.exit_code == 0
    assert "0 new" in second.output and "not modified" in second.output
    conditional = [r for r in feed_server.requests if r.headers.get("If-None-Match")]
    assert len(conditional) == len(counts)
    third = cli("--config", sample_site, "run", "--once")
    assert "no digest due" in third.output
    assert {row.feed.url: row.entries for row in store.feed_status()} == counts
    assert len(store.clusters_between(*_all_time())) == before


def _all_time() -> tuple[Any, Any]:
    from datetime import UTC, datetime

    return datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def test_a_broken_feed_fails_alone_and_sets_the_exit_code(
    sample_site: Path, feed_server: FeedServer, tmp_path: Path
) -> None:
    settings = tomllib.loads(sample_site.read_text(encoding="utf-8"))
    feed_server.add("/gone.xml", "", status=404)
    feed_server.add("/page.html", "<html><body>Hallo</body></html>", content_type="text/html")
    settings["outlets"].append(
        {
            "name": "kaputt.de",
            "feeds": [feed_server.url("/gone.xml"), feed_server.url("/page.html")],
        }
    )
    broken = write_config(tmp_path / "broken.toml", settings)
    result = cli("--config", broken, "fetch")
    assert result.exit_code == 1
    assert "2 failed" in result.output
    status = cli("--config", broken, "status").output
    assert "HTTP 404" in status
    assert "not a feed" in status
    ok_rows = [line for line in status.splitlines() if " ok " in f" {line} "]
    assert len(ok_rows) == sum(len(o["feeds"]) for o in settings["outlets"]) - 2


def test_digest_command_for_an_explicit_period(sample_site: Path, tmp_path: Path) -> None:
    assert cli("--config", sample_site, "fetch", "--all").exit_code == 0
    out = tmp_path / "week.json"
    result = cli(
        "--config",
        sample_site,
        "digest",
        "daily",
        "--since",
        "2026-11-20",
        "--until",
        "2026-11-27",
        "--format",
        "json",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["period"] == {"start": "2026-11-20T00:00:00Z", "end": "2026-11-27T00:00:00Z"}
    assert sum(len(c["entries"]) for c in document["clusters"]) == sum(
        len(labels) for labels in LABELS.values()
    )
    empty = cli(
        "--config",
        sample_site,
        "digest",
        "daily",
        "--since",
        "2020-01-01",
        "--until",
        "2020-01-02",
        "--format",
        "json",
        "--out",
        out,
    )
    assert empty.exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))["clusters"] == []
    bad = cli("--config", sample_site, "digest", "daily", "--since", "last tuesday")
    assert bad.exit_code == 2 and "--since" in bad.output


def test_opml_round_trip(sample_site: Path, tmp_path: Path, database_url: str) -> None:
    exported = tmp_path / "feeds.opml"
    assert cli("--config", sample_site, "feeds", "export", "--out", exported).exit_code == 0
    fresh = write_config(
        tmp_path / "fresh.toml",
        {
            "database": {"url": f"sqlite:///{tmp_path / 'fresh.db'}"},
            "fetch": {"allow_private_addresses": True},
        },
    )
    result = cli("--config", fresh, "feeds", "import", exported)
    assert result.exit_code == 0, result.output
    original = cli("--config", sample_site, "feeds", "list").output
    imported = cli("--config", fresh, "feeds", "list").output
    assert sorted(original.splitlines()) == sorted(imported.splitlines())
    again = cli("--config", fresh, "feeds", "import", exported)
    assert "0 added" in again.output


def test_feeds_add_refuses_private_addresses(tmp_path: Path) -> None:
    strict = write_config(
        tmp_path / "strict.toml", {"database": {"url": f"sqlite:///{tmp_path / 's.db'}"}}
    )
    result = cli("--config", strict, "feeds", "add", "http://127.0.0.1:9/feed.xml")
    assert result.exit_code == 2
    assert result.output.startswith("error: http://127.0.0.1:9/feed.xml:")
    assert cli("--config", strict, "feeds", "list").output == ""


def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[fetch]\nmax_bytes = 'huge'\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(bad), "status"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert str(bad) in result.output and "fetch.max_bytes" in result.output


def test_dedupe_command_names_a_malformed_line(tmp_path: Path) -> None:
    rows = [
        {
            "id": "a",
            "title": "Bahnstreik legt Fernverkehr lahm",
            "summary": "",
            "url": "https://a.de/1",
            "outlet": "a.de",
            "published": "2026-11-24T06:00:00Z",
        },
        {
            "id": "b",
            "title": "Bahnstreik: Fernverkehr steht still",
            "summary": "",
            "url": "https://b.de/1",
            "outlet": "b.de",
            "published": "2026-11-24T07:00:00Z",
        },
    ]
    good = tmp_path / "rows.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = cli("dedupe", good)
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert sorted(e["id"] for c in document["clusters"] for e in c["entries"]) == ["a", "b"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    failed = CliRunner().invoke(main, ["dedupe", str(broken)])
    assert failed.exit_code == 2
    assert f"{broken}:3" in failed.output


def test_recluster_rebuilds_the_same_clusters(sample_site: Path, database_url: str) -> None:
    assert cli("--config", sample_site, "fetch", "--all").exit_code == 0
    store = Store(database_url)

    def grouping() -> set[frozenset[str]]:
        return {frozenset(e.guid for e in c.entries) for c in store.clusters_between(*_all_time())}

    before = grouping()
    result = cli("--config", sample_site, "recluster", "--since", "2026-11-23")
    assert result.exit_code == 0, result.output
    freed = int(result.output.split()[0])
    assert 0 < freed < sum(len(labels) for labels in LABELS.values())
    assert store.unclustered() == []
    assert grouping() == before


def test_feeds_add_discovers_feeds_on_a_home_page(feed_server: FeedServer, tmp_path: Path) -> None:
    rss = (
        ROOT / "tests" / "fixtures" / "feeds" / "rss2_de_utf8_umlauts_cdata_entities.xml"
    ).read_bytes()
    feed_server.add("/news.rss", rss)
    feed_server.add("/sport.rss", rss)
    page = feed_server.add(
        "/",
        '<html><head><link rel="alternate" type="application/rss+xml" title="News" '
        'href="/news.rss"><link rel="alternate" type="application/rss+xml" title="Sport" '
        'href="/sport.rss"></head><body>Startseite</body></html>',
        content_type="text/html; charset=utf-8",
    )
    config = write_config(
        tmp_path / "c.toml",
        {
            "database": {"url": f"sqlite:///{tmp_path / 'd.db'}"},
            "fetch": {"allow_private_addresses": True},
        },
    )
    several = cli("--config", config, "feeds", "add", page)
    assert several.exit_code == 2
    assert "2 feeds found; choose one with --pick N" in several.output
    picked = cli("--config", config, "feeds", "add", page, "--pick", "2", "--outlet", "Beispiel")
    assert picked.exit_code == 0, picked.output
    assert (
        cli("--config", config, "feeds", "list").output
        == f"Beispiel\t{feed_server.url('/sport.rss')}\n"
    )
    direct = cli("--config", config, "feeds", "add", feed_server.url("/news.rss"))
    assert f"added: {feed_server.url('/news.rss')}" in direct.output


def test_a_gone_feed_is_disabled_and_can_be_re_armed(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.add("/old.xml", "", status=410)
    config = write_config(
        tmp_path / "c.toml",
        {
            "database": {"url": f"sqlite:///{tmp_path / 'd.db'}"},
            "fetch": {"allow_private_addresses": True},
            "outlets": [{"name": "alt.de", "feeds": [url]}],
        },
    )
    assert cli("--config", config, "fetch").exit_code == 1
    assert "disabled: HTTP 410 Gone" in cli("--config", config, "status").output
    assert "0 ok" in cli("--config", config, "fetch", "--all").output
    feed_server.add(
        "/old.xml", (ROOT / "tests" / "fixtures" / "feeds" / "atom_en_newsroom.xml").read_bytes()
    )
    assert cli("--config", config, "feeds", "enable", url).exit_code == 0
    again = cli("--config", config, "fetch")
    assert again.exit_code == 0 and "1 ok" in again.output
    assert cli("--config", config, "feeds", "enable", "https://nope.example/x").exit_code == 2


def test_run_once_mails_subscribers_once_per_period(sample_site: Path, tmp_path: Path) -> None:
    settings = tomllib.loads(sample_site.read_text(encoding="utf-8"))
    with SmtpServer() as smtp:
        settings["smtp"] = loopback_smtp(smtp.port, "Nachrichten <digest@example.org>")
        settings["web"] = {"base_url": "https://digest.example.org"}
        config = write_config(tmp_path / "mail.toml", settings)
        for address in ("anna@example.org", "Bernd@Example.org"):
            added = cli("--config", config, "subscribers", "add", address, "--digest", "daily")
            assert added.exit_code == 0, added.output
        first = cli("--config", config, "run", "--once")
        assert first.exit_code == 0, first.output
        assert "2 sent" in first.output
        again = cli("--config", config, "run", "--once")
        assert again.exit_code == 0 and "sent" not in again.output
        assert sorted(smtp.recipients()) == ["anna@example.org", "bernd@example.org"]
        message = smtp.messages_to("anna@example.org")[0]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        plain = message.get_body(("plain",))
        assert plain is not None and "Streik" in plain.get_content()
