"""Normalization: typographic variants meet, evidence survives, nothing raises."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from aggregator import text, text_german


@given(st.text())
def test_fold_is_idempotent(value: str) -> None:
    once = text.fold(value)
    assert text.fold(once) == once


@given(st.text(), st.sampled_from(["de", "en", "fr", "xx"]))
def test_tokens_never_raise_and_are_stable(value: str, language: str) -> None:
    first = text.tokens(value, language)
    assert text.tokens(value, language) == first
    assert all(token and " " not in token for token in first)


@given(st.text(), st.text())
def test_boilerplate_strip_never_raises_or_empties(outlet: str, title: str) -> None:
    model = text.BoilerplateModel()
    model.observe(outlet, title)
    stripped = model.strip(outlet, title)
    assert stripped or not title


def test_german_typography_folds_together() -> None:
    assert text.fold("„Straße“ – München") == text.fold('"Strasse" - Muenchen')
    assert text.fold("»Erdoğan« ‚sagt‘") == text.fold("Erdogan sagt")


def test_stemming_matches_inflections_and_umlaut_spellings() -> None:
    assert text.tokens("Militärbündnis", "de") == text.tokens("Militärbündnisse", "de")
    assert text.tokens("Militaerbuendnisse", "de") == text.tokens("Militärbündnis", "de")


def test_stop_words_drop_and_numbers_stay() -> None:
    assert text.tokens("Der FC verliert mit 1:2 gegen die Gäste", "de") == [
        "fc",
        "verliert",
        "1:2",
        "gast",
    ]
    assert "0.75" in text.tokens("Zinsen steigen um 0,75 Punkte", "de")


def test_language_code_and_guess() -> None:
    assert text.language_code("de-AT") == "de"
    assert text.language_code("German") == "de"
    assert text.language_code(None) is None
    assert text.guess_language("Die Regierung hat sich auf einen Plan geeinigt") == "de"
    assert text.guess_language("The government has agreed on a plan") == "en"


def test_generic_kickers_and_outlet_suffixes_are_stripped() -> None:
    model = text.BoilerplateModel()
    assert model.strip("tagesschau.de", "Video: Sturm über Hamburg | tagesschau.de") == (
        "Sturm über Hamburg"
    )
    assert model.strip("x", "+++ Liveblog +++ Sturm über Hamburg") == "Sturm über Hamburg"
    assert model.strip("x", "Kommentar: Sturm über Hamburg") == "Sturm über Hamburg"


def test_repeated_outlet_segments_are_learned() -> None:
    model = text.BoilerplateModel()
    titles = ["Sturm über Hamburg", "Brand in Kiel", "Wahl in Bremen", "Streik bei der Bahn"]
    for title in titles:
        model.observe("Nordblatt", f"{title} - Das Nordportal")
    assert model.strip("Nordblatt", "Neuer Bürgermeister - Das Nordportal") == (
        "Neuer Bürgermeister"
    )
    # Another outlet has not shown that suffix, and a topical kicker seen once stays.
    assert model.strip("Südblatt", "Neuer Bürgermeister - Das Nordportal").endswith("Nordportal")
    assert model.strip("Nordblatt", "Kiel: Neuer Bürgermeister").startswith("Kiel")


def test_clickbait_detection() -> None:
    assert text.is_clickbait("Ärger um Bürgermeister – das steckt dahinter!")
    assert not text.is_clickbait("Bürgermeister von Kiel tritt zurück")


@given(st.text())
def test_cached_word_folding_agrees_with_fold_on_words(value: str) -> None:
    # The per-word fast path must fold each word exactly as `fold` does.
    assert text.folded_words(value).split() == [
        piece for word in value.split() for piece in text.fold(word).split()
    ]


def test_folded_words_matches_fold_on_headlines() -> None:
    headline = "„Militärbündnis“ – Scholz: Straße in München gesperrt | tagesschau.de"
    assert text.folded_words(headline) == text.fold(headline)


def test_segment_memory_is_bounded_and_boilerplate_survives_pruning() -> None:
    model = text.BoilerplateModel(max_segments=50)
    for number in range(400):
        model.observe("Nordblatt", f"Thema{number}: Meldung Nummer {number} - Das Nordportal")
    assert len(model._prefixes["Nordblatt"]) <= 50
    assert model.strip("Nordblatt", "Thema7: Neuer Bürgermeister - Das Nordportal") == (
        "Thema7: Neuer Bürgermeister"
    )


def test_separable_verb_particle_joins_its_verb() -> None:
    # "weist ... zurück" (denies) and "tritt zurück" (resigns) share no verb token,
    # and no bare "zurück" is left to look like shared evidence.
    denial = text.tokens("Kessler weist Kritik an der Sperre zurück", "de")
    resignation = text.tokens("Kessler tritt zurück", "de")
    assert set(denial) & set(resignation) == {"kessl"}
    assert text.stem("zuruck", "de") not in denial + resignation
    # The particle of each clause goes to that clause's verb.
    assert text.tokens("Truss tritt zurück – Pfund legt zu", "de") == text.tokens(
        "Truss zurücktritt – Pfund zulegt", "de"
    )


def test_particle_without_a_recognizable_verb_is_dropped() -> None:
    # A headline rebuilt from a URL slug has no capitals to tell the verb apart.
    assert text.tokens("kessler tritt zurück", "de") == text.tokens("kessler tritt", "de")
    # A particle that does not end its clause is a preposition or adverb: kept.
    assert text.stem("zuruck", "de") in text.tokens("Bayern ist zurück an der Spitze", "de")
    # English text is not touched.
    assert text.tokens("Kessler steps down", "en") == ["kessler", "step"]


def test_clickbait_prefilter_agrees_with_full_check() -> None:
    for title in ("Das müssen Sie wissen", "DAS STECKT DAHINTER!", "Sturm über Hamburg", "Why"):
        assert text.is_clickbait(title) == (
            text._CLICKBAIT.search(text.folded_words(title)) is not None
        )


_GERMAN_WORDS = st.sampled_from(
    [
        "Kessler", "tritt", "weist", "Kritik", "legt", "Pfund", "der", "die", "und", "oder",
        "aber", "-", "–", "|", "+++", "zurück", "zurück.", "ZURÜCK", "an", "auf", "zu",
        "zu,", "mit", "nach", "vorüber", "ein", "(ab)", "„zurück“", "Mitte", "Anfang", "ab:",
    ]
)  # fmt: skip


@settings(max_examples=400)
@given(st.lists(_GERMAN_WORDS, max_size=12), st.sampled_from([" ", "  ", "\n"]))
@example(["Kessler", "tritt", "zurück", "und", "Pfund", "legt", "zu"], " ")
@example(["Kessler", "tritt", "zurück", "–", "Pfund", "legt", "zu."], " ")
@example(["Kessler", "tritt", "ZURÜCK"], "  ")
def test_the_quick_particle_test_never_skips_a_clause_final_particle(
    words: list[str], separator: str
) -> None:
    # The regular expression only spares the word-by-word pass; it must not change results.
    sentence = separator.join(words)
    assert text_german.join_separable_particles(
        sentence, text._no_stems
    ) == text_german._join_particles(sentence.split(), text._no_stems)
