"""The matcher on hand-written hard cases: joins what is one event, keeps apart what is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import text
from aggregator.cluster import (
    TUNING,
    Clusterer,
    Item,
    Merge,
    PairScorer,
    cluster_items,
    resolve_merges,
)
from aggregator.cluster_score import (
    DocumentFrequencies,
    explain_pair,
    featurize,
    pair_score,
    scored_pair,
)
from aggregator.config import ClusterSettings
from aggregator.dedupe import load_rows, to_items
from aggregator.models import Match

FIXTURE = Path(__file__).parent / "fixtures" / "dedupe" / "hard_cases.jsonl"
T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)


def settings(**values: object) -> ClusterSettings:
    return ClusterSettings.model_validate(values)


def fixture_items() -> tuple[list[Item], dict[int, str], dict[str, int]]:
    pairs = to_items(load_rows(FIXTURE))
    story = {item.id: row.story or "" for row, item in pairs}
    by_guid = {row.id: item.id for row, item in pairs}
    return [item for _, item in pairs], story, by_guid


def clusters_by_guid() -> dict[str, int]:
    items, _, by_guid = fixture_items()
    cluster_of = {m.entry_id: m.cluster_id for m in cluster_items(items, settings())}
    return {guid: cluster_of[item_id] for guid, item_id in by_guid.items()}


def test_hard_cases_match_gold_labels() -> None:
    items, story, _ = fixture_items()
    matches = cluster_items(items, settings())
    predicted = {m.entry_id: m.cluster_id for m in matches}
    for a in items:
        for b in items:
            same_gold = story[a.id] == story[b.id]
            same_predicted = predicted[a.id] == predicted[b.id]
            assert same_gold == same_predicted, (a.title, b.title)


def test_same_outlet_update_with_new_url_joins() -> None:
    cluster = clusters_by_guid()
    assert cluster["h3"] == cluster["h1"] == cluster["h2"]


@pytest.mark.parametrize(
    ("a", "b"),
    [("b1", "b2"), ("p1", "p2"), ("p2", "p3"), ("r1", "r2"), ("r1", "r3"), ("s1", "s2")],
    ids=[
        "two-matchdays",
        "same-politician",
        "same-politician-2",
        "plan-vs-resignation",
        "plan-2",
        "denial-vs-resignation",
    ],
)
def test_hard_negatives_stay_apart(a: str, b: str) -> None:
    cluster = clusters_by_guid()
    assert cluster[a] != cluster[b]


def test_exact_duplicate_text_and_reason() -> None:
    items, _, by_guid = fixture_items()
    matches = {m.entry_id: m for m in cluster_items(items, settings())}
    duplicate = matches[by_guid["d2"]]
    assert duplicate.matched_id == by_guid["d1"]
    assert duplicate.reason == "same normalized text"
    assert duplicate.score == 100


def test_same_canonical_url_joins_whatever_the_text() -> None:
    first = Item(1, "a", "Sturm über Hamburg", "", T0, canonical_url="https://a.example/1")
    second = Item(2, "a", "Ganz anderer Titel", "", T0, canonical_url="https://a.example/1")
    matches = cluster_items([first, second], settings())
    assert matches[1].cluster_id == 1
    assert matches[1].reason == "same canonical URL"


@pytest.mark.parametrize("hours", [(0, 8, 11), (0, 8, 13)], ids=["first-copy-too-old", "evicted"])
def test_a_url_updated_for_longer_than_the_window_stays_one_story(
    hours: tuple[int, int, int],
) -> None:
    """The newest copy of a URL is the one compared in time, and the last one to leave."""
    url = "https://a.example/liveblog"
    first, second, third = (T0 + timedelta(hours=h) for h in hours)
    items = [
        Item(1, "a", "Bundestag beschließt Haushalt für 2025", "", first, canonical_url=url),
        Item(2, "a", "Bundestag beschließt Haushalt für 2025", "", second, canonical_url=url),
        Item(3, "a", "Kanzler äußert sich zur Regierungskrise", "", third, canonical_url=url),
    ]
    matches = cluster_items(items, settings(window="10h"))
    assert (matches[2].cluster_id, matches[2].matched_id) == (1, 2)
    assert matches[2].reason == "same canonical URL"


def test_an_entry_already_in_the_window_is_refused() -> None:
    clusterer = Clusterer(settings())
    clusterer.add(Item(1, "a", "Sturm über Hamburg", "", T0))
    with pytest.raises(ValueError, match="entry 1 is already in the matcher's window"):
        clusterer.add(Item(1, "b", "Sturm über Hamburg", "", T0))


def test_new_cluster_is_named_after_its_founder() -> None:
    match = cluster_items([Item(7, "a", "Sturm über Hamburg", "", T0)], settings())[0]
    assert (match.cluster_id, match.matched_id, match.score) == (7, None, 100)


def chain() -> list[Item]:
    a = Item(
        1,
        "a.example",
        "Sturmtief Zeynep deckt Dächer in Hamburg ab",
        "Sturmtief Zeynep hat in Hamburg zahlreiche Dächer abgedeckt und Bäume entwurzelt. "
        "Die Feuerwehr rückte zu 300 Einsätzen aus.",
        T0,
    )
    b = Item(
        2,
        "b.example",
        "Sturmtief Zeynep: Dächer in Hamburg abgedeckt, Fähren in Bremen gestoppt",
        "Sturmtief Zeynep hat in Hamburg Dächer abgedeckt. In Bremen stellten die Fähren "
        "den Betrieb ein, die Weser trat über die Ufer.",
        T0 + timedelta(hours=1),
    )
    c = Item(
        3,
        "c.example",
        "Weser tritt über die Ufer: Fähren in Bremen gestoppt",
        "In Bremen stellten die Fähren den Betrieb ein, die Weser trat über die Ufer. "
        "Der Hafen meldet Hochwasser.",
        T0 + timedelta(hours=2),
    )
    return [a, b, c]


def test_no_chaining_through_a_bridge_item() -> None:
    a, b, c = chain()
    config = settings()
    score = PairScorer([a, b, c], config)
    threshold = Clusterer(config).threshold
    # The premise: A~B and B~C, but A and C are about different things.
    assert score(1, 2).score >= threshold
    assert score(2, 3).score >= threshold
    assert score(1, 3).score < threshold - 15
    matches = cluster_items([a, b, c], config)
    assert matches[1].cluster_id == 1
    assert matches[2].cluster_id != 1


def test_far_apart_items_are_never_compared() -> None:
    a, b, _ = chain()
    late = Item(b.id, b.outlet, a.title, a.summary, a.published + timedelta(days=4))
    matches = cluster_items([a, late], settings())
    assert matches[1].cluster_id == late.id


def test_incremental_equals_batch_and_priming_equals_one_run() -> None:
    items, _, _ = fixture_items()
    config = settings()
    batch = cluster_items(items, config)
    one_by_one = Clusterer(config)
    assert [one_by_one.add(item) for item in items] == batch
    half = len(items) // 2
    primed = Clusterer(config)
    for item, match in zip(items[:half], batch[:half], strict=True):
        primed.prime(item, match)
    assert [primed.add(item) for item in items[half:]] == batch[half:]


def test_threshold_setting_overrides_default() -> None:
    items, _, _ = fixture_items()
    strict = cluster_items(items, settings(threshold=100))
    assert all(m.matched_id is None or m.score == 100 for m in strict)


def test_window_evicts_old_items() -> None:
    clusterer = Clusterer(settings(window="1h"))
    for hour in range(100):
        clusterer.add(
            Item(hour, "a", f"Meldung Nummer {hour} aus Kiel", "", T0 + timedelta(hours=hour))
        )
    assert len(clusterer._state.features) <= 3


def test_story_granularity_groups_related_events() -> None:
    titles = [
        "Comcast agrees to buy Time Warner Cable",
        "Time Warner Cable shareholders back Comcast merger",
        "Senators question Comcast Time Warner Cable deal",
        "Apple releases new iPhone update",
    ]
    items = [Item(i, f"o{i}", t, "", T0 + timedelta(hours=i)) for i, t in enumerate(titles)]
    story = cluster_items(items, settings(granularity="story"))
    assert story[1].cluster_id == story[2].cluster_id == 0
    assert story[3].cluster_id == 3


def test_syndicated_copy_under_another_outlet_suffix_is_an_exact_duplicate() -> None:
    lead = "Die Bahn streikt ab Montag bundesweit, der Fernverkehr steht still."
    first = Item(1, "nordblatt.example", "Bahnstreik ab Montag - Nordblatt", lead, T0)
    second = Item(2, "sued.example", "Bahnstreik ab Montag | sued.example", lead, T0)
    matches = cluster_items([first, second], settings())
    assert (matches[1].cluster_id, matches[1].reason) == (1, "same normalized text")


def test_big_cluster_is_scored_on_a_bounded_sample() -> None:
    # Thirty reports of one event: every one joins, and the explanation counts
    # the sampled members, not the whole cluster.
    items = [
        Item(
            i,
            f"o{i}.example",
            ("Sturmtief Zeynep deckt Dächer in Hamburg ab", "Zeynep deckt in Hamburg Dächer ab")[
                i % 2
            ],
            f"Sturmtief Zeynep hat in Hamburg {i + 2} Dächer abgedeckt.",
            T0 + timedelta(minutes=i),
        )
        for i in range(30)
    ]
    matches = cluster_items(items, settings())
    assert {m.cluster_id for m in matches} == {0}
    clusterer = Clusterer(settings())
    assert clusterer.tuning.sample_size < 30
    late = [m for m in matches[clusterer.tuning.sample_size + 1 :] if m.matched_id is not None]
    assert late and all(f"/{clusterer.tuning.sample_size} sampled" in m.reason for m in late)


def test_separable_particle_alone_is_no_shared_evidence() -> None:
    # "Kessler weist Kritik ... zurück" and "Kessler tritt zurück": the name and
    # a bare "zurück" were all they shared, and it used to be enough to merge.
    items, _, by_guid = fixture_items()
    score = PairScorer(items, settings())(by_guid["s1"], by_guid["s2"]).score
    assert score < Clusterer(settings()).threshold


def story_items() -> list[Item]:
    titles = [
        "Comcast agrees to buy Time Warner Cable",
        "Senators question cable merger",
        "Comcast Time Warner Cable merger draws questions from senators",
        "Apple releases new iPhone update",
        "Senators to hold hearing on Comcast deal",
    ]
    return [Item(i, f"o{i}", t, "", T0 + timedelta(hours=i)) for i, t in enumerate(titles)]


def test_story_clusters_founded_in_parallel_merge_into_the_older() -> None:
    items = story_items()
    clusterer = Clusterer(settings(granularity="story"))
    issued = [clusterer.add(item) for item in items]
    # Item 1 founded a cluster of its own; item 2 joined it and brought it close
    # enough to cluster 0 that the two merged, and its match names the survivor.
    assert issued[1].cluster_id == 1
    assert issued[2].cluster_id == 0
    merges = clusterer.take_merges()
    assert [(m.absorbed, m.into) for m in merges] == [(1, 0)]
    assert merges[0].score >= clusterer.tuning.merge_threshold  # type: ignore[operator]
    assert clusterer.take_merges() == []
    resolved = resolve_merges(issued, merges)
    assert [m.cluster_id for m in resolved] == [0, 0, 0, 3, 0]
    assert resolved[1].matched_id == 0 and "merged" in resolved[1].reason
    assert resolved == cluster_items(items, settings(granularity="story"))


def test_merging_needs_more_than_joining() -> None:
    tuning = Clusterer(settings(granularity="story")).tuning
    assert tuning.merge_threshold is not None
    assert tuning.merge_threshold > Clusterer(settings(granularity="story")).threshold
    # Event granularity never merges: an issued event cluster keeps its entries.
    assert Clusterer(settings()).tuning.merge_threshold is None


def test_story_priming_from_resolved_matches_equals_one_run() -> None:
    items = story_items()
    config = settings(granularity="story")
    batch = cluster_items(items, config)
    primed = Clusterer(config)
    for item, match in zip(items[:3], batch[:3], strict=True):
        primed.prime(item, match)
    later = resolve_merges([primed.add(item) for item in items[3:]], primed.take_merges())
    assert later == batch[3:]


def test_resolve_merges_follows_chains() -> None:
    matches = [Match(i, i, None, 100.0, "new cluster") for i in range(3)]
    resolved = resolve_merges(matches, [Merge(2, 1, 30.0), Merge(1, 0, 40.0)])
    assert [m.cluster_id for m in resolved] == [0, 0, 0]
    assert [m.matched_id for m in resolved] == [None, 0, 1]


@pytest.mark.parametrize("floor", [0.0, 40.0, 60.0, 75.0])
def test_a_pair_that_reaches_its_floor_explains_itself_with_the_parts_it_was_scored_with(
    floor: float,
) -> None:
    """The clusterer's explanations reuse the scoring's rapidfuzz parts: exact from the floor up."""
    items, _, _ = fixture_items()
    tuning = TUNING["event"]
    boilerplate, frequencies = text.BoilerplateModel(), DocumentFrequencies()
    features = [featurize(item, boilerplate, frequencies, tuning) for item in items]
    reached = 0
    for a in features:
        for b in features:
            score, parts = scored_pair(a, b, tuning, floor)
            assert score == pytest.approx(pair_score(a, b, tuning, floor))
            if score >= floor and score > 0:  # 0 may be a clamped total below any floor
                assert parts is not None
                reached += 1
                assert explain_pair(a, b, tuning, parts) == explain_pair(a, b, tuning)
    assert reached > len(features)  # not only each item with itself
