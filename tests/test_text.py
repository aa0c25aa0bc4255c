"""Normalization: typographic variants meet, evidence survives, nothing raises."""

from __future__ import annotations

import re

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


def _first_prefix(value: str) -> tuple[str, str] | None:
    """`text._prefix` written out plainly: the earliest separator ending a 2-60 character kicker."""
    found = [
        (at, separator)
        for separator in text._PREFIX_SEPARATORS
        if (at := value.find(separator, 2, text._SEGMENT_MAX + len(separator))) >= 0
    ]
    if not found:
        return None
    at, separator = min(found)
    return value[:at], value[at + len(separator) :].lstrip()


def _last_suffix(value: str) -> tuple[str, str] | None:
    """`text._suffix` written out plainly: the last separator, its segment 2-60 characters."""
    found = [
        (at, separator)
        for separator in text._SUFFIX_SEPARATORS
        if (at := value.rfind(separator, 1)) >= 0
    ]
    if not found:
        return None
    at, separator = max(found)
    segment = value[at + len(separator) :].strip()
    if not 2 <= len(segment) <= text._SEGMENT_MAX or not text._SUFFIX_FORBIDDEN.isdisjoint(segment):
        return None
    return segment, value[:at].rstrip()


# Titles dense with separators, their characters and their overlaps (" - - ", "| - |").
_SEPARATED_TITLES = st.lists(
    st.sampled_from([" ", "a", "Bb", ":", "-", "|", "–", "—", "·", "»", "x" * 29]), max_size=40
).map("".join)


@settings(max_examples=500)
@given(_SEPARATED_TITLES)
@example("Video: Sturm - Hamburg | site.de")
@example("a - |b")
@example(" - - - x")
@example("ab" + "x" * 58 + ": rest")
@example("ab" + "x" * 59 + ": rest")
def test_segment_search_finds_the_same_separators_as_plain_loops(value: str) -> None:
    # One regular expression (the suffix one on the reversed text) replaces a
    # loop over the separators; the segments found must be exactly the same.
    assert text._prefix(value) == _first_prefix(value)
    assert text._suffix(value) == _last_suffix(value)


@given(st.text())
def test_ticker_hint_search_agrees_with_the_hint_list(value: str) -> None:
    assert (text._TICKER_HINT.search(value) is not None) == any(
        hint in value for hint in text._TICKER_HINTS
    )


def test_learned_segments_are_counted_like_a_counter() -> None:
    model = text.BoilerplateModel()
    titles = ["Kiel: Brand im Hafen - Das Nordportal", "Wahl in Bremen - Das Nordportal"]
    for title in titles * 2:
        model.observe("Nordblatt", title)
    assert model._titles == {"Nordblatt": 4}
    assert model._suffixes == {"Nordblatt": {"dasnordportal": 4}}
    # "Wahl in Bremen - Das Nordportal" has a prefix too: " - " ends a short kicker.
    assert model._prefixes == {"Nordblatt": {"kiel": 2, "wahlinbremen": 2}}
    # Nothing observed for another outlet: no table, nothing stripped.
    assert "Südblatt" not in model._prefixes
    assert model.strip("Südblatt", "Wahl in Bremen - Das Nordportal") == (
        "Wahl in Bremen - Das Nordportal"
    )


def test_a_title_that_is_only_boilerplate_is_kept_whole() -> None:
    model = text.BoilerplateModel()
    # "The" leaves no stem, so stripping "Video:" would leave nothing to match on.
    assert model.strip("x", "Video: The") == "Video: The"
    assert model.strip("x", "Video: Sturm") == "Sturm"


def test_particle_prefix_tree_matches_exactly_the_particles() -> None:
    tree = re.compile(text_german.prefix_tree(text_german.PARTICLES))
    near = {p[:-1] for p in text_german.PARTICLES} | {p + "n" for p in text_german.PARTICLES}
    for word in text_german.PARTICLES | near | {"", "h", "hera", "vorueber"}:
        assert (tree.fullmatch(word) is not None) == (word in text_german.PARTICLES), word


# The quick test as a plain alternation of the particles, longest first.
_PLAIN_CLAUSE_FINAL_PARTICLE = re.compile(
    r"\b(?:"
    + "|".join(sorted(text_german.PARTICLES, key=len, reverse=True))
    + r")\b(?:["
    + re.escape(text_german._CLAUSE_PUNCTUATION)
    + r"]|\s*$|\s+(?:"
    + "|".join(re.escape(w) for w in sorted(text_german._DASHES | text_german._CONJUNCTIONS))
    + r")(?:\s|$))",
    re.IGNORECASE,
)


@settings(max_examples=500)
@given(
    st.lists(
        st.sampled_from(
            ["her", "heran", "HERAN", "Vorüber", "vorueber", "zurück", "zu", "Zus", "aus", "ab",
             "ſ", "K", "İ", "an", " ", "  ", ".", ",", "-", " und ", " oder", "\n", "„", "“", "x"]
        ),
        max_size=16,
    ).map("".join)
)  # fmt: skip
def test_particle_prefix_tree_finds_what_the_plain_alternation_finds(value: str) -> None:
    assert (text_german._CLAUSE_FINAL_PARTICLE.search(value) is None) == (
        _PLAIN_CLAUSE_FINAL_PARTICLE.search(value) is None
    )


def test_first_letter_lookahead_admits_every_case_variant() -> None:
    # Any cased character (the Kelvin sign for "k", say) in place of a
    # particle's first letter: the lookahead must let through what the
    # case-insensitive particle itself would match.
    cased = [chr(c) for c in range(0x110000) if chr(c).lower() != chr(c).upper()]
    for particle in text_german.PARTICLES:
        for letter in cased:
            value = f"Er {letter}{particle[1:]}."
            assert (text_german._CLAUSE_FINAL_PARTICLE.search(value) is None) == (
                _PLAIN_CLAUSE_FINAL_PARTICLE.search(value) is None
            ), value


@given(st.text(alphabet="abdeghilnoprstuwy ", max_size=40))
@example("so reagieren")
@example("what happened next")
def test_clickbait_hint_finds_any_hint_word(value: str) -> None:
    assert (text._CLICKBAIT_HINT.search(value) is not None) == any(
        word in value for word in text._CLICKBAIT_HINT_WORDS
    )
