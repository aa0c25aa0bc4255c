"""The offline `dedupe` path: reading files, clustering, reporting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.config import ClusterSettings
from aggregator.dedupe import DedupeInputError, dedupe, explain, gold_report, load_rows
from aggregator.digest.records import cluster_record

FIXTURE = Path(__file__).parent / "fixtures" / "dedupe" / "hard_cases.jsonl"


def test_jsonl_to_cluster_records() -> None:
    rows = load_rows(FIXTURE)
    clusters = dedupe(rows, ClusterSettings())
    records = [cluster_record(c) for c in clusters]
    by_entry = {e["id"]: r for r in records for e in r["entries"]}
    assert set(by_entry) == {row.id for row in rows}
    assert by_entry["h1"]["id"] == by_entry["h3"]["id"]
    updated = next(e for e in by_entry["h3"]["entries"] if e["id"] == "h3")
    assert updated["matched"]["id"] in {"h1", "h2"}
    assert updated["matched"]["score"] > 0
    json.dumps(records)


def test_csv_input(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "id,title,summary,url,outlet,published\n"
        'a,"Sturm über Hamburg: Dächer abgedeckt",Lead,https://x/a,x,2024-03-01T08:00:00Z\n'
        "b,Sturm über Hamburg - Dächer abgedeckt,Lead,https://y/b,y,2024-03-01T09:00:00Z\n",
        encoding="utf-8",
    )
    rows = load_rows(path)
    assert [r.id for r in rows] == ["a", "b"]
    clusters = dedupe(rows, ClusterSettings())
    assert len(clusters) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"id": "a", "title": "T", "published": "2024-03-01"}\n{oops\n',
            "items.jsonl:2: not valid JSON",
        ),
        ('{"id": "a", "title": "T"}\n', "items.jsonl:1: missing field 'published'"),
        ('{"id": "a", "title": "T", "published": "gestern"}\n', "items.jsonl:1: published"),
        (
            '{"id": "a", "title": "T", "published": "2024-03-01"}\n\n'
            '{"id": "a", "title": "U", "published": "2024-03-01"}\n',
            "items.jsonl:3: duplicate id 'a'",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DedupeInputError, match=message.replace("(", r"\(")) as error:
        load_rows(path)
    assert "\n" not in str(error.value)


def test_csv_without_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("name,text\nx,y\n", encoding="utf-8")
    with pytest.raises(DedupeInputError, match=r"items\.csv:1: CSV header"):
        load_rows(path)


def test_gold_report_and_explain() -> None:
    rows = load_rows(FIXTURE)
    clusters = dedupe(rows, ClusterSettings())
    report = gold_report(rows, clusters)
    assert report.startswith("BCubed P 1.000")
    assert "missed pairs" in report
    text = explain(clusters)
    assert "h2\tcluster" in text
    assert "same normalized text" in text


def test_gold_report_reports_errors_with_scores(tmp_path: Path) -> None:
    rows = load_rows(FIXTURE)
    # Relabel one item so the clustering now "misses" it and "falsely merges" another.
    wrong = [r if r.id != "h3" else type(r)(**{**r.__dict__, "story": "other"}) for r in rows]
    report = gold_report(wrong, dedupe(rows, ClusterSettings()))
    assert "h3 [other]" in report
    assert "worst false merges (2 shown)" in report


def test_gold_requires_labels(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a", "title": "T", "published": "2024-03-01"}\n', encoding="utf-8")
    rows = load_rows(path)
    with pytest.raises(DedupeInputError, match="no 'story' label"):
        gold_report(rows, dedupe(rows, ClusterSettings()))


def test_story_merges_regroup_earlier_entries_and_are_explained(tmp_path: Path) -> None:
    titles = [
        "Comcast agrees to buy Time Warner Cable",
        "Senators question cable merger",
        "Comcast Time Warner Cable merger draws questions from senators",
        "Apple releases new iPhone update",
    ]
    path = tmp_path / "story.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"n{i}", "title": t, "published": f"2024-03-01T0{i}:00:00Z"}) + "\n"
            for i, t in enumerate(titles)
        ),
        encoding="utf-8",
    )
    clusters = dedupe(load_rows(path), ClusterSettings.model_validate({"granularity": "story"}))
    assert [[e.guid for e in c.entries] for c in clusters] == [["n0", "n1", "n2"], ["n3"]]
    assert "n1\tcluster 0\tmatched n0 score" in explain(clusters)
    assert "its cluster merged" in explain(clusters)


def test_the_same_article_under_tracking_parameters_is_one_story(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    rows = [
        {
            "id": "a",
            "title": "Bahn erhöht die Preise",
            "url": "https://www.Example.de/bahn?utm_source=rss",
        },
        {"id": "b", "title": "Wetter: Sturm zieht auf", "url": "https://www.example.de/bahn#top"},
    ]
    path.write_text(
        "".join(json.dumps(row | {"published": "2024-03-01T08:00:00Z"}) + "\n" for row in rows),
        encoding="utf-8",
    )
    clusters = dedupe(load_rows(path), ClusterSettings())
    assert len(clusters) == 1
    assert any("same canonical URL" in m.reason for m in clusters[0].matches.values())
