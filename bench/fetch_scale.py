"""Fetching at scale: 2,000 feeds x 50 items, aggregator against the `reader` library.

Run from the project root (needs `pip install reader psutil py-spy`, or
`pip install -e '.[bench]'`):

    python bench/fetch_scale.py [--feeds 2000] [--items 50] [--no-reader] [--profile-feeds 0]

Generates seeded RSS 2.0 news feeds (German headlines about shared events, so
clustering has real work) into a temporary folder, serves them from 10
loopback addresses (127.0.0.1 .. 127.0.0.10, one HTTP server process each,
answering If-None-Match with 304) and measures, each tool in its own process:

- aggregator: what `aggregator fetch --all` does (sync the config, fetch,
  parse, store, cluster) against a fresh SQLite database, then the same again
  when every answer is 304;
- reader: `update_feeds(workers=8, scheduled=False)` for the same feeds and
  cycles.

Reports the wall time of each cycle (inside the process, imports excluded),
the peak RSS of each tool's process tree (summed over the process and its
children, e.g. aggregator's parser pool, sampled every 200 ms), aggregator's
own peak after its fetch stage, and CPU time. With py-spy available, one more
aggregator first cycle and its 304 cycle are sampled (all processes) over the
first --profile-feeds feeds, and the time is split by stage: fetch, parse,
store, cluster.

The figures go into docs/fetch-scale.md between the generated-section
markers; the rest of that file (the analysis) is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

HOSTS = [f"127.0.0.{n}" for n in range(1, 11)]
OUTLETS_PER_HOST = 20
READER_WORKERS = 8
SAMPLE_SECONDS = 0.2
PROFILE_RATE = 200
DOC = Path("docs/fetch-scale.md")
BEGIN = "<!-- fetch_scale.py: generated figures start -->"
END = "<!-- fetch_scale.py: generated figures end -->"

# -- the corpus ------------------------------------------------------------------

SUBJECTS = [
    "Bundesregierung",
    "Bundestag",
    "Kanzler Scholz",
    "Friedrich Merz",
    "Die Grünen",
    "Die Linke",
    "CSU-Chef Söder",
    "Bundesrat",
    "Verdi",
    "IG Metall",
    "Deutsche Bahn",
    "Lufthansa",
    "Volkswagen",
    "Siemens",
    "BASF",
    "Europäische Zentralbank",
    "Bundesverfassungsgericht",
    "Bundesgerichtshof",
    "Stadtrat",
    "Landesregierung",
    "Gesundheitsminister Lauterbach",
    "Finanzminister",
    "Außenministerin Baerbock",
    "Wirtschaftsminister Habeck",
    "Innenministerin Faeser",
    "Bundeswehr",
    "Polizei",
    "Feuerwehr",
    "Deutscher Wetterdienst",
    "FC Bayern München",
    "Borussia Dortmund",
    "Bayer Leverkusen",
    "Eintracht Frankfurt",
    "Deutscher Fußball-Bund",
    "Mieterbund",
    "Verbraucherzentrale",
    "Ärztekammer",
    "Bauernverband",
    "Gewerkschaft der Lokführer",
    "Städtetag",
    "Kultusministerkonferenz",
    "Bundesagentur für Arbeit",
    "Statistisches Bundesamt",
    "Ifo-Institut",
    "Umweltbundesamt",
    "Robert-Koch-Institut",
    "Bundesnetzagentur",
    "Kartellamt",
    "Landgericht",
    "Oberbürgermeisterin",
    "Zoll",
    "Autobahn GmbH",
]
ACTIONS = [
    ("beschließt", "verabschiedet", "bringt auf den Weg"),
    ("kritisiert", "rügt", "geißelt"),
    ("stoppt", "kippt", "setzt aus"),
    ("plant", "erwägt", "prüft"),
    ("fordert", "verlangt", "drängt auf"),
    ("verschiebt", "vertagt", "legt auf Eis"),
    ("verteidigt", "rechtfertigt", "steht zu"),
    ("warnt vor", "mahnt wegen", "sieht Gefahr durch"),
    ("einigt sich auf", "findet Kompromiss bei", "verständigt sich auf"),
    ("lehnt ab", "weist zurück", "blockiert"),
    ("verschärft", "strafft", "zieht an"),
    ("lockert", "entschärft", "weicht auf"),
    ("untersucht", "ermittelt wegen", "prüft Vorwürfe zu"),
    ("startet", "beginnt", "eröffnet"),
]
OBJECTS = [
    "Heizungsgesetz",
    "Mindestlohn",
    "Bürgergeld",
    "Tarifverhandlungen",
    "Schuldenbremse",
    "Kohleausstieg",
    "Tempolimit",
    "Rentenreform",
    "Cannabis-Freigabe",
    "Deutschlandticket",
    "Krankenhausreform",
    "Wehrpflicht",
    "Grundsteuer",
    "Mietpreisbremse",
    "Lieferkettengesetz",
    "Wärmepumpen-Förderung",
    "Haushaltsentwurf",
    "Bahnstreik",
    "Warnstreik",
    "Zinserhöhung",
    "Asylverfahren",
    "Grenzkontrollen",
    "Digitalpakt Schule",
    "Glasfaserausbau",
    "Elterngeld",
    "Kindergrundsicherung",
    "Pflegeversicherung",
    "Hochwasserschutz",
    "Waldbrandgefahr",
    "Hitzewarnung",
    "Sturmflut",
    "Glätte auf Autobahnen",
    "Lehrermangel",
    "Ärztemangel",
    "Wohnungsbau",
    "Sanierung der Brücken",
    "Stadionverbot",
    "Trainerwechsel",
    "Transfer eines Stürmers",
    "Pokal-Aus",
    "Abstiegskampf",
    "Meisterschaft",
    "Datenschutz-Verstoß",
    "Cyberangriff",
    "Stromausfall",
    "Gaspreise",
    "Spritpreise",
    "Inflationsrate",
    "Arbeitslosenzahlen",
    "Exportüberschuss",
    "Kurzarbeit",
    "Werksschließung",
    "Stellenabbau",
    "Fusion",
    "Börsengang",
    "Subventionen für Chipfabrik",
    "Wasserstoff-Strategie",
    "Windkraft-Ausbau",
    "Solarpflicht",
    "Verbrenner-Aus",
    "Fahrverbote",
    "Maut-Erhöhung",
]
PLACES = [
    "Berlin",
    "München",
    "Hamburg",
    "Köln",
    "Frankfurt",
    "Stuttgart",
    "Düsseldorf",
    "Leipzig",
    "Dresden",
    "Hannover",
    "Nürnberg",
    "Bremen",
    "Essen",
    "Duisburg",
    "Bochum",
    "Münster",
    "Göttingen",
    "Lübeck",
    "Würzburg",
    "Fürth",
    "Gießen",
    "Saarbrücken",
    "Erfurt",
    "Jena",
    "Rostock",
    "Kiel",
    "Mainz",
    "Wiesbaden",
    "Görlitz",
    "Tübingen",
    "Osnabrück",
    "Chemnitz",
    "Magdeburg",
    "Potsdam",
    "Regensburg",
    "Passau",
    "Lüneburg",
    "Bückeburg",
    "Völklingen",
    "Zweibrücken",
    "Brandenburg an der Havel",
    "Offenbach",
    "Weißenfels",
    "Königswinter",
]
OUTLET_NAMES = [
    "Tagesblick",
    "Morgenpost",
    "Rundschau",
    "Allgemeine",
    "Kurier",
    "Anzeiger",
    "Echo",
    "Nachrichten",
    "Zeitung",
    "Presse",
    "Stimme",
    "Bote",
    "Merkur",
    "Spiegelbild",
    "Tageblatt",
    "Volksblatt",
    "Generalanzeiger",
    "Abendblatt",
    "Neueste",
    "Südkurier",
]
# Names and German compounds multiply the vocabulary, as real news has far more
# words than the lists above: postings stay short, as they would on real feeds.
FIRST_NAMES = [
    "Jörg",
    "Anna",
    "Björn",
    "Lea",
    "Sören",
    "Małgorzata",
    "Jürgen",
    "Käthe",
    "Günther",
    "Ayşe",
    "Hans",
    "Petra",
    "Uwe",
    "Sabine",
    "Mehmet",
    "Julia",
    "Thomas",
    "Müjgan",
    "Lars",
    "Doris",
    "René",
    "Zoë",
    "Matthias",
    "Ines",
    "Kai",
    "Franziska",
    "Olaf",
    "Hülya",
    "Niklas",
    "Renée",
]
LAST_NAMES = [
    "Müller",
    "Schäfer",
    "Weiß",
    "Groß",
    "Köhler",
    "Schröder",
    "Bäcker",
    "Krüger",
    "Jäger",
    "Schütz",
    "Böhm",
    "Fuß",
    "Hölzl",
    "Lößner",
    "Märtens",
    "Özdemir",
    "Nowak",
    "Yılmaz",
    "Brandt",
    "Vogel",
    "Kessler",
    "Hartmann",
    "Lorenz",
    "Seidel",
    "Winkler",
    "Haas",
    "Franke",
    "Albrecht",
    "Schuster",
    "Graf",
    "Dietrich",
    "Kühn",
    "Pohl",
    "Engel",
    "Horn",
    "Busch",
    "Bergmann",
    "Thiele",
    "Ziegler",
    "Wendt",
    "Rößler",
    "Strauß",
    "Glöckner",
    "Hübner",
    "Mäder",
    "Würth",
    "Öztürk",
    "Lübke",
    "Dürr",
    "Förster",
]
COMPOUND_HEADS = [
    "Stadt",
    "Landes",
    "Bundes",
    "Kreis",
    "Kinder",
    "Energie",
    "Wasser",
    "Klima",
    "Schul",
    "Kranken",
    "Renten",
    "Steuer",
    "Verkehrs",
    "Wohnungs",
    "Hafen",
    "Flughafen",
    "Bahn",
    "Polizei",
    "Gemeinde",
    "Bürger",
    "Jugend",
    "Pflege",
    "Agrar",
    "Grenz",
    "Fernwärme",
]
COMPOUND_TAILS = [
    "gesetz",
    "reform",
    "abgabe",
    "förderung",
    "streik",
    "prüfung",
    "gipfel",
    "skandal",
    "plan",
    "haushalt",
    "gebühr",
    "zuschuss",
    "ausbau",
    "ausschuss",
    "urteil",
    "bündnis",
    "debatte",
    "krise",
    "programm",
    "verordnung",
]
SECTIONS = [
    "politik",
    "wirtschaft",
    "inland",
    "ausland",
    "sport",
    "kultur",
    "wissen",
    "regional",
    "panorama",
    "schlagzeilen",
]
TEMPLATES = [
    "{subject} {action} {object}",
    "{place}: {subject} {action} {object}",
    "{person} ({subject}) {action} {object}",
    "{object} in {place}: {person} {action} Vorschlag",
    "{object}: {subject} {action} – Streit in {place}",
    "„{object}“ – {subject} {action} Pläne",
    "{subject} {action} {object} in {place}",
    "Nach Kritik: {subject} {action} {object}",
    "{object}: Was die Entscheidung von {subject} für {place} bedeutet",
    "Eilmeldung: {subject} {action} {object}",
]
FILLER = [
    "Die Opposition zeigte sich überrascht und kündigte Widerstand an.",
    "Experten rechnen mit spürbaren Folgen für Verbraucherinnen und Verbraucher.",
    "Ein Sprecher äußerte sich am Abend zunächst nicht zu den Einzelheiten.",
    "Über die Größenordnung wird seit Wochen gestritten.",
    "Die Gespräche sollen in der kommenden Woche fortgesetzt werden.",
    "Betroffene können sich an die örtlichen Beratungsstellen wenden.",
    "Kritiker halten den Schritt für übereilt, Befürworter für überfällig.",
    "Nach Angaben der Behörden gab es zunächst keine Verletzten.",
    "Die Entscheidung fiel nach stundenlangen Beratungen hinter verschlossenen Türen.",
    "Bürgerinnen und Bürger äußerten in Umfragen große Skepsis.",
]


@dataclass(frozen=True)
class Event:
    subject: str
    action: tuple[str, str, str]
    object: str
    place: str
    person: str
    number: int
    at: datetime


@dataclass(frozen=True)
class FeedFile:
    url: str
    outlet: str
    host: str
    path: str


def make_events(rng: random.Random, count: int, now: datetime) -> list[Event]:
    return [
        Event(
            rng.choice(SUBJECTS),
            rng.choice(ACTIONS),
            rng.choice(OBJECTS)
            if rng.random() < 0.4
            else rng.choice(COMPOUND_HEADS) + rng.choice(COMPOUND_TAILS),
            rng.choice(PLACES),
            f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            rng.randint(2, 950),
            now - timedelta(minutes=rng.randint(200, 47 * 60)),
        )
        for _ in range(count)
    ]


def headline(rng: random.Random, event: Event) -> str:
    title = rng.choice(TEMPLATES).format(
        subject=event.subject,
        action=rng.choice(event.action),
        object=event.object,
        place=event.place,
        person=event.person,
    )
    if rng.random() < 0.3:
        title += f" ({event.number} Millionen Euro)" if rng.random() < 0.5 else " – Liveblog"
    return title


def ascii_slug(text: str) -> str:
    """'Südkurier3' -> 'suedkurier3': URL paths stay ASCII, as on real news sites."""
    for umlaut, spelled in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.lower().replace(umlaut, spelled)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def item_xml(rng: random.Random, outlet: str, section: str, event: Event, serial: int) -> str:
    title = headline(rng, event)
    link = f"https://www.{ascii_slug(outlet)}.example/{section}/{ascii_slug(event.object)}"
    link += f"-a{serial:07d}.html"
    published = event.at + timedelta(minutes=rng.randint(0, 180))
    summary = (
        f"{event.subject} {event.action[0]} {event.object}: In {event.place} geht es laut "
        f"{event.person} um "
        f"rund {event.number} Millionen Euro. " + " ".join(rng.sample(FILLER, 3))
    )
    author = rng.choice(["Jörg Müller", "Anna Schäfer", "Björn Weiß", "Lea Groß", "dpa"])
    return (
        "<item>"
        f"<title>{escape(title)}</title>"
        f"<link>{link}</link>"
        f'<guid isPermaLink="false">{ascii_slug(outlet)}-{serial}</guid>'
        f"<pubDate>{format_datetime(published)}</pubDate>"
        f"<dc:creator>{escape(author)}</dc:creator>"
        f"<category>{section.title()}</category>"
        f"<description><![CDATA[<p>{summary}</p>]]></description>"
        "</item>"
    )


def generate(
    root: Path, ports: dict[str, int], feeds: int, items: int, seed: int
) -> list[FeedFile]:
    """Write `feeds` RSS files under `root`; feeds of one outlet share one host."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    # About ten reports per event: clusters of several outlets, as in real news.
    events = make_events(rng, max(1, feeds * items // 10), now)
    outlets = [
        f"{name}{n}"
        for n in range(len(HOSTS) * OUTLETS_PER_HOST // 20 + 1)
        for name in OUTLET_NAMES
    ][: len(HOSTS) * OUTLETS_PER_HOST]
    files = []
    serial = 0
    for index in range(feeds):
        outlet = outlets[index % len(outlets)]
        host = HOSTS[(index % len(outlets)) % len(HOSTS)]
        section = SECTIONS[(index // len(outlets)) % len(SECTIONS)]
        path = f"/{ascii_slug(outlet)}/{section}-{index}.xml"
        body = []
        for _ in range(items):
            serial += 1
            body.append(item_xml(rng, outlet, section, rng.choice(events), serial))
        document = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>{outlet} – {section.title()}</title>"
            f"<link>https://www.{ascii_slug(outlet)}.example/{section}/</link>"
            f"<description>Nachrichten aus {section.title()} – {outlet}</description>"
            f"<language>de</language><lastBuildDate>{format_datetime(now)}</lastBuildDate>"
            + "".join(body)
            + "</channel></rss>\n"
        )
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(document, encoding="utf-8")
        files.append(FeedFile(f"http://{host}:{ports[host]}{path}", outlet, host, path))
    return files


# -- the servers -----------------------------------------------------------------


def serve(root: Path, address: str) -> None:
    """One static server: files under `root`, ETag from mtime and size, 304 on a match."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            path = (root / unquote(self.path.lstrip("/").split("?")[0])).resolve()
            if root not in path.parents or not path.is_file():
                self.send_error(404)
                return
            stat = path.stat()
            etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

        def handle_error(self, request: Any, client_address: Any) -> None:
            """Clients hanging up on keep-alive connections are expected."""

    server = Server((address, 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_servers(root: Path) -> tuple[list[subprocess.Popen[str]], dict[str, int]]:
    processes, ports = [], {}
    for host in HOSTS:
        process = subprocess.Popen(
            [sys.executable, __file__, "serve", str(root), host],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        ports[host] = int(process.stdout.readline())
        processes.append(process)
    return processes, ports


# -- one cycle of each tool, in its own process ------------------------------------


def aggregator_config(
    folder: Path, files: list[FeedFile], concurrency: int, per_host: int, parallel: bool = True
) -> Path:
    """A configuration with one [[outlets]] table per outlet, as a newsroom would write it."""
    by_outlet: dict[str, list[str]] = collections.defaultdict(list)
    for feed in files:
        by_outlet[feed.outlet].append(feed.url)
    lines = [
        "[database]",
        'url = "sqlite:///aggregator.db"',
        "[fetch]",
        "allow_private_addresses = true",
        f"max_concurrency = {concurrency}",
        f"per_host_concurrency = {per_host}",
        "[cluster]",
        f"parallel = {'true' if parallel else 'false'}",
    ]
    for outlet, urls in by_outlet.items():
        lines += ["[[outlets]]", f'name = "{outlet}"', 'language = "de"', f"feeds = {urls!r}"]
    path = folder / "aggregator.toml"
    path.write_text("\n".join(lines).replace("'", '"') + "\n", encoding="utf-8")
    return path


def aggregator_cycle(config_path: Path) -> dict[str, Any]:
    """What `aggregator fetch --all` does (cli._fetch), with a timestamp after each stage.

    Also the main process's peak RSS when the fetch stage ends, before clustering.
    """
    import resource

    from aggregator import config
    from aggregator.pipeline import Pipeline
    from aggregator.store import Store

    settings = config.load(config_path)
    started = time.perf_counter()
    store = Store(settings.database_url)
    pipeline = Pipeline(settings, store)
    pipeline.sync_config()
    store.feeds(include_disabled=False)  # the CLI counts them for its progress bar
    synced = time.perf_counter()
    cpu_synced = time.process_time()
    summary = asyncio.run(pipeline.fetch(all_feeds=True))
    fetched = time.perf_counter()
    cpu_fetched = time.process_time()
    fetch_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    clustered = pipeline.cluster()
    done = time.perf_counter()
    cpu_done = time.process_time()
    store.close()
    return {
        "seconds": done - started,
        "stages": {
            "sync config": synced - started,
            "fetch + parse + store": fetched - synced,
            "cluster": done - fetched,
        },
        "fetch_rss": fetch_rss,
        # CPU of the main process (all its threads) by stage; the parser processes are apart.
        "main_cpu": {
            "fetch + parse + store": cpu_fetched - cpu_synced,
            "cluster": cpu_done - cpu_fetched,
        },
        "summary": summary.line() + f"; {clustered} clustered",
        "failed": summary.failed,
    }


def reader_cycle(database: Path, urls_file: Path) -> dict[str, Any]:
    """One `update_feeds` of the `reader` library over every feed (added once, untimed)."""
    from reader import make_reader

    reader = make_reader(str(database))
    known = {feed.url for feed in reader.get_feeds()}
    for url in urls_file.read_text().split():
        if url not in known:
            reader.add_feed(url)
    started = time.perf_counter()
    reader.update_feeds(workers=READER_WORKERS, scheduled=False)
    done = time.perf_counter()
    counts = reader.get_entry_counts()
    broken = sum(1 for feed in reader.get_feeds() if feed.last_exception)
    reader.close()
    return {
        "seconds": done - started,
        "stages": {},
        "summary": f"{counts.total} entries stored, {broken} feeds with errors",
        "failed": broken,
    }


@dataclass
class Run:
    tool: str
    cycle: str
    seconds: float
    process_seconds: float
    peak_rss: int
    peak_process_rss: int
    cpu_seconds: float
    stages: dict[str, float]
    summary: str
    failed: int
    # aggregator only: its main process's peak RSS at the end of the fetch stage, and
    # the CPU of its main process by stage.
    fetch_rss: int | None = None
    main_cpu: dict[str, float] | None = None


@dataclass
class TreeSampler:
    """Peak RSS (summed over a process and its descendants) and their CPU time, sampled."""

    pid: int
    peak: int = 0
    peak_process: int = 0
    cpu: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for process in tree:
                try:
                    rss = process.memory_info().rss
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                total += rss
                self.peak_process = max(self.peak_process, rss)
                self.cpu[process.pid] = times.user + times.system
            self.peak = max(self.peak, total)
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()


def run_cycle(tool: str, cycle: str, args: list[str], cwd: Path) -> Run:
    """Run one cycle in a child process while sampling its tree; its JSON line is the result."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    sampler = TreeSampler(process.pid)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    output, _ = process.communicate()
    took = time.perf_counter() - started
    sampler.stop()
    thread.join()
    if process.returncode != 0:
        raise SystemExit(f"{tool} {cycle}: exited with {process.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    # The tree's own accounting covers what the sampler missed at the end.
    cpu = max(sum(sampler.cpu.values()), result["cpu_seconds"])
    return Run(
        tool,
        cycle,
        result["seconds"],
        took,
        max(sampler.peak, result["maxrss"]),
        max(sampler.peak_process, result["maxrss"]),
        cpu,
        result["stages"],
        result["summary"],
        result["failed"],
        result.get("fetch_rss"),
        result.get("main_cpu"),
    )


def child_main(kind: str, argv: list[str]) -> None:
    import resource

    result = (
        aggregator_cycle(Path(argv[0]))
        if kind == "aggregator"
        else reader_cycle(Path(argv[0]), Path(argv[1]))
    )
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["maxrss"] = max(own.ru_maxrss, children.ru_maxrss) * 1024
    result["cpu_seconds"] = sum(usage.ru_utime + usage.ru_stime for usage in (own, children))
    print(json.dumps(result))


# -- profile ---------------------------------------------------------------------

STAGES = [
    # (stage, a frame that puts a sample in it), checked from the root of each stack.
    ("sync config", re.compile(r"^(?:\w+\.)?sync_config \(.*pipeline\.py")),
    ("cluster", re.compile(r"^(?:\w+\.)?cluster \(.*pipeline\.py")),
    ("parse", re.compile(r"^parse_or_reason \(")),
    ("store", re.compile(r"^BatchWriter\._run \(.*store/writer\.py")),
    ("fetch (HTTP, SSRF check)", re.compile(r"\((?:.*/httpx/|.*/httpcore/|.*/h11/|.*fetch/)")),
    ("start-up (imports, config, pool)", re.compile(r"^_find_and_load|^load \(.*config\.py")),
]


def frame_name(frame: str) -> str:
    """'fn (path/to/module.py:12)' -> 'fn (module.py)'."""
    match = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not match:
        return frame
    path = match.group(2)
    tail = "/".join(path.split("/")[-2:]) if "aggregator/" in path else path.split("/")[-1]
    return f"{match.group(1)} ({tail})"


def stage_of(frames: list[str]) -> str:
    for stage, marker in STAGES:
        if any(marker.search(frame) for frame in frames):
            return stage
    if frames and "process" in frames[0].lower() and any("_process_worker" in f for f in frames):
        return "parser pool: idle, pickling, IPC"
    return "event loop, scheduling, other"


@dataclass
class Profile:
    cycle: str
    feeds: int
    seconds: float
    stages: collections.Counter[str]
    self_time: collections.Counter[str]
    inclusive: collections.Counter[str]
    samples: int


def profile_cycle(config_path: Path, cwd: Path, cycle: str) -> Profile | None:
    """One cycle under `py-spy record --subprocesses`, split into stages.

    `cycle` only names it: the first call in a fresh folder is a first cycle,
    the next one a 304 cycle. Sampling a part of the feeds keeps the run short;
    every stage is linear in the number of feeds or entries (clustering:
    bounded candidates per entry), so the shares hold for the whole set.
    """
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        return None
    raw = cwd / f"profile-{cycle}.txt"
    started = time.perf_counter()
    completed = subprocess.run(
        [
            py_spy,
            "record",
            "--subprocesses",
            "--nonblocking",
            "--rate",
            str(PROFILE_RATE),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--",
            sys.executable,
            str(Path(__file__).resolve()),
            "aggregator-cycle",
            str(config_path),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    if completed.returncode != 0 or not raw.exists():
        print(f"py-spy failed, no profile: {completed.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    stages: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        # Drop the "process NNN:..." and thread frames py-spy puts first.
        code = [f for f in frames if re.search(r"\(.*:\d+\)$", f)]
        stages[stage_of(code or frames)] += count
        if code:
            self_time[frame_name(code[-1])] += count
        for name in {frame_name(f) for f in code}:
            inclusive[name] += count
    feeds = config_path.read_text().count("http://")
    return Profile(cycle, feeds, took, stages, self_time, inclusive, samples)


# -- report ----------------------------------------------------------------------


def machine() -> str:
    memory = "?"
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {memory} RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("feedparser", "httpx", "rapidfuzz", "SQLAlchemy", "reader", "requests"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def mib(size: int) -> str:
    return f"{size / 1024 / 1024:.0f} MiB"


def report(
    runs: list[Run],
    profiles: list[Profile],
    command: str,
    setup: str,
    load_before: str,
) -> str:
    lines = [
        BEGIN,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; load average "
        f"before the run {load_before}.",
        f"Versions: {versions()}.",
        "",
        f"Command: `{command}`",
        "",
        setup,
        "",
        "| tool | cycle | wall (s) | process incl. start-up (s) | CPU of tree (s) "
        "| peak RSS of tree | largest process | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        lines.append(
            f"| {run.tool} | {run.cycle} | {run.seconds:.1f} | {run.process_seconds:.1f} "
            f"| {run.cpu_seconds:.1f} | {mib(run.peak_rss)} | {mib(run.peak_process_rss)} "
            f"| {run.summary} |"
        )
    by = {(run.tool, run.cycle): run for run in runs}
    lines += [
        "",
        "| cycle | reader / aggregator (target >= 3) | stages of aggregator (s) |",
        "| --- | ---: | --- |",
    ]
    for cycle in ("first", "304"):
        ours, theirs = by.get(("aggregator", cycle)), by.get(("reader", cycle))
        if ours is None:
            continue
        ratio = f"{theirs.seconds / ours.seconds:.2f}" if theirs else "n/a"
        stages = ", ".join(f"{name} {took:.1f}" for name, took in ours.stages.items())
        lines.append(f"| {cycle} | {ratio} | {stages} |")
    peak = max((run.peak_rss for run in runs if run.tool == "aggregator"), default=0)
    lines += ["", f"aggregator's peak RSS (whole process tree): {mib(peak)} (target <= 500 MiB)."]
    fetch_rss = [f"{run.cycle} {mib(run.fetch_rss)}" for run in runs if run.fetch_rss is not None]
    if fetch_rss:
        lines.append(
            "aggregator's main process at the end of the fetch stage, before clustering: "
            + ", ".join(fetch_rss)
            + "."
        )
    for run in runs:
        if run.main_cpu is not None and run.cycle == "first":
            stages = ", ".join(f"{name} {cpu:.1f} s" for name, cpu in run.main_cpu.items())
            rest = run.cpu_seconds - sum(run.main_cpu.values())
            lines.append(
                f"CPU of aggregator's main process in the first cycle, by stage: {stages}; "
                f"the rest of the tree (parser processes, start-up): {rest:.1f} s."
            )
    for profile in profiles:
        lines += profile_lines(profile)
    lines += ["", END]
    return "\n".join(lines)


def profile_lines(profile: Profile) -> list[str]:
    total = sum(profile.stages.values()) or 1
    rate = PROFILE_RATE
    fresh = "in a fresh database" if profile.cycle == "first" else "after that first cycle"
    lines = [
        "",
        f"Profile of the {profile.cycle} cycle: the first {profile.feeds} feeds {fresh} "
        f"under `py-spy record --subprocesses --rate {rate}` "
        f"({profile.seconds:.1f} s wall with py-spy attached, imports included), all processes, "
        f"idle threads excluded, so a second of samples is a second of CPU "
        f"(up to {os.cpu_count()} per wall second):",
        "",
        "| stage | CPU (s) | share |",
        "| --- | ---: | ---: |",
    ]
    for stage, count in profile.stages.most_common():
        lines.append(f"| {stage} | {count / rate:.1f} | {100 * count / total:.0f} % |")
    table = ["", "| function | CPU (s) |", "| --- | ---: |"]
    lines += ["", "Top functions by own time (self):", *table]
    for name, count in profile.self_time.most_common(15):
        lines.append(f"| `{name}` | {count / rate:.1f} |")
    lines += ["", "Top aggregator functions by inclusive time:", *table]
    ours_only = [(n, c) for n, c in profile.inclusive.most_common() if "aggregator/" in n]
    for name, count in ours_only[:15]:
        lines.append(f"| `{name}` | {count / rate:.1f} |")
    return lines


def write_doc(section: str) -> None:
    """Replace the generated section of the doc, keeping the hand-written analysis around it."""
    text = (
        DOC.read_text(encoding="utf-8")
        if DOC.exists()
        else ("# Fetching at scale\n\n" + BEGIN + "\n" + END + "\n")
    )
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text += "\n" + section + "\n"
    DOC.write_text(text, encoding="utf-8")


def print_table(runs: list[Run]) -> None:
    print(f"{'tool':<11}{'cycle':<7}{'wall s':>8}{'proc s':>8}{'CPU s':>8}{'peak RSS':>11}  result")
    for run in runs:
        print(
            f"{run.tool:<11}{run.cycle:<7}{run.seconds:>8.1f}{run.process_seconds:>8.1f}"
            f"{run.cpu_seconds:>8.1f}{mib(run.peak_rss):>11}  {run.summary}"
        )
        for stage, took in run.stages.items():
            print(f"{'':<18}{stage}: {took:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--max-concurrency", type=int, default=40)
    parser.add_argument("--per-host", type=int, default=4)
    parser.add_argument("--no-reader", action="store_true", help="Skip the reader library.")
    parser.add_argument(
        "--profile-feeds",
        type=int,
        default=400,
        help="Feeds in the extra py-spy cycles (first and 304, own database); 0 skips them.",
    )
    parser.add_argument("--no-doc", action="store_true", help=f"Do not update {DOC}.")
    parser.add_argument(
        "--one-process",
        dest="parallel",
        action="store_false",
        help="aggregator with cluster.parallel = false (no normalizer process while clustering).",
    )
    options = parser.parse_args()
    command = "python " + " ".join(sys.argv)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    with tempfile.TemporaryDirectory(prefix="fetch-scale-") as tmp:
        folder = Path(tmp)
        root = folder / "feeds"
        root.mkdir()
        servers, ports = start_servers(root)
        try:
            started = time.perf_counter()
            files = generate(root, ports, options.feeds, options.items, options.seed)
            size = sum((root / f.path.lstrip("/")).stat().st_size for f in files)
            setup = (
                f"{len(files)} RSS 2.0 feeds x {options.items} items ({size / 1e6:.0f} MB, "
                f"seed {options.seed}, generated in {time.perf_counter() - started:.0f} s), "
                f"{len(files) // len(HOSTS)} feeds on each of {len(HOSTS)} loopback addresses, "
                "one ThreadingHTTPServer process each (HTTP/1.1 keep-alive, ETag -> 304). "
                f"aggregator: max_concurrency = {options.max_concurrency}, "
                f"per_host_concurrency = {options.per_host}, parse_workers default "
                f"(one per CPU), cluster.parallel = {str(options.parallel).lower()}; "
                f"reader: update_feeds(workers={READER_WORKERS}, scheduled=False)."
            )
            print(setup, flush=True)
            work = folder / "aggregator"
            work.mkdir()
            config_path = aggregator_config(
                work, files, options.max_concurrency, options.per_host, options.parallel
            )
            runs = []
            for cycle in ("first", "304"):
                runs.append(
                    run_cycle("aggregator", cycle, ["aggregator-cycle", str(config_path)], work)
                )
                print_table(runs[-1:])
            if not options.no_reader:
                urls = folder / "urls.txt"
                urls.write_text("\n".join(f.url for f in files))
                for cycle in ("first", "304"):
                    runs.append(
                        run_cycle(
                            "reader",
                            cycle,
                            ["reader-cycle", str(folder / "reader.sqlite"), str(urls)],
                            folder,
                        )
                    )
                    print_table(runs[-1:])
            profiles = []
            if options.profile_feeds:
                scratch = folder / "profile"
                scratch.mkdir()
                subset = aggregator_config(
                    scratch,
                    files[: options.profile_feeds],
                    options.max_concurrency,
                    options.per_host,
                )
                for cycle in ("first", "304"):
                    profile = profile_cycle(subset, scratch, cycle)
                    if profile is not None:
                        profiles.append(profile)
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait()
    section = report(runs, profiles, command, setup, load_before)
    print()
    print(section)
    if not options.no_doc:
        write_doc(section)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(Path(sys.argv[2]).resolve(), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] in ("aggregator-cycle", "reader-cycle"):
        child_main(sys.argv[1].removesuffix("-cycle"), sys.argv[2:])
    else:
        main()
