"""Language-aware normalization for matching headlines and leads.

Two outlets rarely print the same bytes for the same sentence: one writes
„Militärbündnis“, the other "Militaerbuendnis"; one uses a dash, the other a
hyphen; a headline ends in "| tagesschau.de". Everything here maps such
variants onto one form so that the matcher compares wording, not typography.

Pure functions plus bounded caches (stemmers, per-word folds and stems, outlet
segments, title splits): no I/O, no state that changes results. The caches are what makes
normalisation cheap on a long stream, where nearly every word was seen before.
`BoilerplateModel` is the one stateful helper; it learns per outlet which
title segments repeat, because a prefix such as "Video:" or a suffix such as
"- news.de" that appears on many of an outlet's titles says nothing about the
event.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer
from stop_words import LANGUAGE_MAPPING, get_stop_words

from aggregator.text_german import join_separable_particles, prefix_tree

DEFAULT_LANGUAGE = "en"

# Every quotation mark becomes a space: „X“, »X«, "X" and ‚X‘ then tokenize alike.
_QUOTES = "\"'`´„“”‟«»‹›‚‘’‛❝❞＂＇"
# Hyphens, dashes and minus signs become one ASCII hyphen.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d"
_TRANSLATION = {ord(c): " " for c in _QUOTES} | {ord(c): "-" for c in _DASHES}
# German umlauts are spelled out before accents are stripped, so "Müller" and
# "Mueller" meet; other accents ("Erdoğan", "café") are dropped.
_UMLAUTS = {"ä": "ae", "ö": "oe", "ü": "ue"}
_SPELLED = re.compile("ae|oe|ue")

# A number keeps its inner separators ("4:2", "0,75", "50.000") as evidence:
# different scores or rates are different events.
_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*|[^\W\d_]+(?:\d+)?", re.UNICODE)
_NUMBER = re.compile(r"\d")
_NOT_ALNUM = re.compile(r"[\W_]+")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")

# Segment separators in headlines: "Kicker: Headline", "Headline - outlet.de",
# "Headline | Site", "+++ Liveblog +++". Text is whitespace-normalized (single
# spaces) before it is split.
_PREFIX_SEPARATORS = (": ", " - ", " | ", " – ", " — ")
_SUFFIX_SEPARATORS = (" - ", " – ", " — ", " · ", " » ", "|")
_SUFFIX_FORBIDDEN = frozenset("-|–—·»")
_SEGMENT_MAX = 60
# One search finds the first prefix separator: no two separators match at the
# same position, so the leftmost match is the earliest of them. The search ends
# where a separator starting at _SEGMENT_MAX ends.
_PREFIX_SEPARATOR = re.compile(prefix_tree(_PREFIX_SEPARATORS))
_PREFIX_SEARCH_END = _SEGMENT_MAX + max(len(s) for s in _PREFIX_SEPARATORS)
# The last suffix separator is the first match in the reversed text. A separator
# at index i of length k starts at len(text) - i - k there, so the three-character
# ones keep their (reversed) order; "|", the only other length, is in none of
# them, so it cannot start inside one and swap places with it.
_SUFFIX_SEPARATOR_REVERSED = re.compile(prefix_tree([s[::-1] for s in _SUFFIX_SEPARATORS]))
_TICKER_HINTS = ("++", "**", "##", "\u25ba", "\u25b6", "\u26a1", "\U0001f534")
# Finds any hint in one scan; `_TICKER_MARKS` is slower because of its repeats.
_TICKER_HINT = re.compile("|".join(re.escape(hint) for hint in _TICKER_HINTS))
_TICKER_MARKS = re.compile(r"\+{2,}|\*{2,}|#{2,}|\u25ba|\u25b6|\u26a1|\U0001f534")
_TRAILING_ELLIPSIS = re.compile(r"\s*(?:\.{3}|…)\s*$")
_PAREN_TAG = re.compile(r"\s*[(\[](?:video|audio|fotos?|photos?|bilder|live|update|\d{1,2})[)\]]")

# Kicker words that label the format, not the event. Kept short on purpose:
# outlet-specific boilerplate is learned by `BoilerplateModel`.
GENERIC_KICKERS = frozenset(
    {
        "video",
        "videos",
        "audio",
        "podcast",
        "exklusiv",
        "exclusive",
        "kommentar",
        "meinung",
        "analyse",
        "interview",
        "liveblog",
        "live-blog",
        "live",
        "liveticker",
        "ticker",
        "newsticker",
        "news-ticker",
        "newsblog",
        "eil",
        "eilmeldung",
        "breaking",
        "breaking news",
        "update",
        "updated",
        "watch",
        "raw",
        "fotos",
        "bilder",
        "photos",
        "gallery",
        "opinion",
        "plus",
        "news",
        "aktuell",
    }
)

# Headline phrases that promise content without naming it. Such a title is
# not evidence of an event, so the matcher leans on the lead instead.
CLICKBAIT_PHRASES = (
    "das steckt dahinter",
    "steckt dahinter",
    "das muessen sie wissen",
    "was sie wissen muessen",
    "das ist der grund",
    "der grund ist",
    "so reagiert",
    "so reagieren",
    "unglaublich",
    "schock",
    "you won't believe",
    "you wont believe",
    "here's why",
    "heres why",
    "this is why",
    "what you need to know",
    "what happened next",
)

# Snowball algorithm names by ISO 639-1 code (the languages both packages know).
_SNOWBALL = {
    "ar": "arabic",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fa": "persian",
    "fi": "finnish",
    "fr": "french",
    "hi": "hindi",
    "hu": "hungarian",
    "id": "indonesian",
    "it": "italian",
    "nb": "norwegian",
    "nl": "dutch",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
}


def fold(text: str) -> str:
    """Typographic folding: NFKC, casefold (ß -> ss), quotes, dashes, umlauts, accents.

    Idempotent, total on any Unicode string. The result keeps word order and
    punctuation other than quotes, so it still reads as text.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.translate(_TRANSLATION)
    for umlaut, spelled in _UMLAUTS.items():
        text = text.replace(umlaut, spelled)
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    # NFKC after stripping: decomposition can expose compatibility forms again,
    # and a second casefold keeps the function idempotent on exotic letters.
    text = unicodedata.normalize("NFKC", text).casefold()
    if any(u in text for u in _UMLAUTS):
        return fold(text)
    return " ".join(text.split())


def language_code(language: str | None) -> str | None:
    """ "de-AT", "de_DE", "German" -> "de"; None or unknown -> None."""
    if not language:
        return None
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if code in _SNOWBALL or code in LANGUAGE_MAPPING:
        # One string per language: the matcher's window keeps one per entry (5 MB per
        # 100,000 entries as copies).
        return sys.intern(code)
    by_name = {name: iso for iso, name in _SNOWBALL.items()}
    return by_name.get(code)


@lru_cache(maxsize=64)
def stop_words(language: str) -> frozenset[str]:
    """The maintained stop-word list of the `stop-words` package, folded like text."""
    try:
        words = get_stop_words(language)
    except Exception:  # the package raises its own error type for unknown languages
        return frozenset()
    return frozenset(t for w in words for t in _TOKEN.findall(fold(w)))


def guess_language(text: str, default: str = DEFAULT_LANGUAGE, lead: str = "") -> str:
    """German or English by stop-word counts in `text` and `lead`.

    The lead's counts are cached by its whole text: agency leads recur verbatim
    under many outlets' headlines. The feed's language wins when known (the
    caller asks only when it is not).
    """
    german, english = _votes(text)
    if lead:
        lead_german, lead_english = _lead_votes(lead)
        german += lead_german
        english += lead_english
    if german > english:
        return "de"
    if english > german:
        return "en"
    return default


def _votes(text: str) -> tuple[int, int]:
    german = english = 0
    for word in text.split():
        votes = _word_votes(word)
        german += votes[0]
        english += votes[1]
    return german, english


@lru_cache(maxsize=20_000)
def _lead_votes(lead: str) -> tuple[int, int]:
    return _votes(lead)


@lru_cache(maxsize=400_000)
def _word_votes(word: str) -> tuple[int, int]:
    """How many German and English stop words one whitespace-separated word holds."""
    german_stops, english_stops = stop_words("de"), stop_words("en")
    found = _word_tokens(word)
    return sum(t in german_stops for t in found), sum(t in english_stops for t in found)


@lru_cache(maxsize=64)
def _stemmer(language: str) -> snowballstemmer.stemmer | None:
    name = _SNOWBALL.get(language)
    return snowballstemmer.stemmer(name) if name else None


@lru_cache(maxsize=200_000)
def stem(word: str, language: str) -> str:
    """Light Snowball stem of one folded word ("militaerbuendnisse" -> "militarbundnis").

    Cached: news vocabulary is Zipfian, so a few hundred thousand entries
    cover nearly every lookup.
    """
    if _NUMBER.search(word):
        return _DECIMAL_COMMA.sub(".", word)
    stemmer = _stemmer(language)
    return stemmer.stemWord(word) if stemmer else word


@lru_cache(maxsize=400_000)
def _fold_word(word: str) -> str:
    return fold(word)


@lru_cache(maxsize=400_000)
def _word_tokens(word: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(_fold_word(word)))


def _word_stems(word: str, language: str) -> tuple[str, ...]:
    """Informative stems of one whitespace-separated word, memoized per language.

    A plain dict per language rather than `lru_cache`: a lookup is one string
    hash, and this runs for every word of every item. The table is emptied
    when it outgrows `_STEM_CACHE_SIZE` (bounded memory; it refills in seconds).
    """
    cache = _STEM_CACHES.get(language)
    if cache is None:
        cache = _STEM_CACHES[language] = {}
    stems = cache.get(word)
    if stems is None:
        if len(cache) >= _STEM_CACHE_SIZE:
            cache.clear()
        stops = stop_words(language)
        stems = cache[word] = tuple(
            stem(token, language)
            for token in _word_tokens(word)
            if token not in stops and (len(token) >= 2 or token.isdigit())
        )
    return stems


_STEM_CACHES: dict[str, dict[str, tuple[str, ...]]] = {}
_STEM_CACHE_SIZE = 400_000


def _no_stems(word: str) -> bool:
    """A German word that leaves no informative stem (a stop word, a single letter)."""
    return not _word_stems(word, "de")


def folded_words(text: str) -> str:
    """`fold` by whitespace-separated word, each cached: the hot path for long streams.

    News vocabulary repeats, so after a few thousand items nearly every word
    is a cache hit and folding costs one dictionary lookup per word. Equal to
    `fold(text)` except for exotic compositions across a space.
    """
    return " ".join(folded for word in text.split() if (folded := _fold_word(word)))


def tokens(text: str, language: str) -> list[str]:
    """Informative stems in order: folded, split, stop words dropped, stemmed.

    Hyphenated compounds are split ("Lambrecht-Rücktritt" -> lambrecht, rucktritt)
    so they meet the spelled-apart form. German separable verbs are joined
    again ("tritt zurück" -> zurucktritt, see `text_german`). Numbers are kept
    as tokens. Stems are cached per whitespace-separated word, because words
    repeat across items.
    """
    cache = _STEM_CACHES.get(language, {})
    found: list[str] = []
    words = join_separable_particles(text, _no_stems) if language == "de" else text.split()
    for word in words:
        stems = cache.get(word)
        found.extend(_word_stems(word, language) if stems is None else stems)
    return found


def is_clickbait(title: str) -> bool:
    """True for headlines that withhold the event ("Das steckt dahinter!").

    A casefolded search for one word of each phrase rules out nearly every
    headline before the full folding runs.
    """
    if _CLICKBAIT_HINT.search(unicodedata.normalize("NFKC", title).casefold()) is None:
        return False
    return _CLICKBAIT.search(folded_words(title)) is not None


_CLICKBAIT = re.compile("|".join(re.escape(phrase) for phrase in CLICKBAIT_PHRASES))
# One word of every phrase that needs no folding beyond NFKC and casefold (no
# spelled-out umlaut), so a headline with none of them cannot match a phrase.
_CLICKBAIT_HINT_WORDS = frozenset(
    max((w for w in phrase.split() if w.isalpha() and not _SPELLED.search(w)), key=len)
    for phrase in CLICKBAIT_PHRASES
)
_CLICKBAIT_HINT = re.compile(prefix_tree(_CLICKBAIT_HINT_WORDS))


@lru_cache(maxsize=50_000)
def _segment_key(segment: str) -> str:
    return _NOT_ALNUM.sub("", folded_words(segment))


@lru_cache(maxsize=50_000)
def outlet_key(outlet: str) -> str:
    """ "www.Tagesschau.de" -> "tagesschau": the part of an outlet name a suffix repeats."""
    name = fold(outlet).removeprefix("www.")
    name = re.sub(r"\.(?:de|at|ch|com|net|org|co\.uk|uk|li|lu|info|online|tv)$", "", name)
    return "".join(c for c in name if c.isalnum())


@lru_cache(maxsize=50_000)
def _is_generic_kicker(segment: str) -> bool:
    """A kicker that labels the format ("Video", "+++ Liveblog"), whatever the outlet.

    Cached by segment alone (not with the outlet): the same headline runs under
    many outlets, and most candidate segments are headline text, not kickers.
    """
    key = folded_words(segment).strip(" .!:+*#")
    return key in GENERIC_KICKERS or key.endswith(("liveblog", "ticker", "newsblog"))


def _names_outlet(key: str, outlet: str) -> bool:
    """Whether a segment, by its `_segment_key`, is the outlet's own name."""
    own = outlet_key(outlet)
    return len(key) >= 3 and len(own) >= 3 and (own in key or key in own)


@dataclass
class BoilerplateModel:
    """Learns, per outlet, title prefixes and suffixes that repeat across its titles.

    A segment counts as boilerplate once it ends at least `min_count` of the
    outlet's titles and at least `min_share` of them: "- news.de" on every
    title qualifies, a topical kicker such as "Ukraine-Krieg:" on a few does not.
    Counts only grow as titles are observed, so the same titles in the same
    order always give the same decisions (batch == incremental).
    """

    min_count: int = 3
    min_share: float = 0.2
    max_segments: int = 500

    def __post_init__(self) -> None:
        self._titles: Counter[str] = Counter()
        self._prefixes: dict[str, Counter[str]] = {}
        self._suffixes: dict[str, Counter[str]] = {}

    def observe(self, outlet: str, title: str) -> None:
        """Count the prefix and suffix segment of one title of `outlet`."""
        self._titles[outlet] += 1
        prefix, suffix = _split_segments(title)
        if prefix is not None:
            self._count(self._prefixes, outlet, prefix)
        if suffix is not None:
            self._count(self._suffixes, outlet, suffix)

    def _count(self, table: dict[str, Counter[str]], outlet: str, segment: str) -> None:
        """One more title of `outlet` with `segment`; the table stays under `max_segments`."""
        counts = table.get(outlet)
        if counts is None:  # not `setdefault`: that builds a Counter on every call
            counts = table[outlet] = Counter()
        key = _segment_key(segment)
        # `get`, not `+= 1`: a new key would go through `Counter.__missing__`.
        counts[key] = counts.get(key, 0) + 1
        if len(counts) > self.max_segments:
            # Bounded memory: keep the most frequent half; boilerplate repeats.
            # Halving (not trimming one) keeps the cost amortized O(1) per title.
            kept = counts.most_common(self.max_segments // 2)
            counts.clear()
            counts.update(dict(kept))

    def strip(self, outlet: str, title: str) -> str:
        """The title without generic kickers, ticker marks and the outlet's learned segments."""
        text = _clean_title(title)
        cleaned = text
        for _ in range(3):  # "Video: Eil: Headline - site.de" has nested layers
            before = text
            prefix = _prefix(text)
            if prefix is not None and self._is_boilerplate(self._prefixes, outlet, prefix[0]):
                text = prefix[1]
            suffix = _suffix(text)
            if suffix is not None and self._is_boilerplate(self._suffixes, outlet, suffix[0]):
                text = suffix[1]
            text = text.strip(" -|:·")
            if text == before:
                break
        if text == cleaned and text:
            return text
        # Never strip a title to nothing: then the segment *was* the title.
        return text if _has_stems(text) else title

    def _is_boilerplate(self, table: dict[str, Counter[str]], outlet: str, segment: str) -> bool:
        """A segment the outlet repeats, a generic kicker, or the outlet's own name.

        The outlet's counts are looked at first: one dictionary lookup, and the
        answer for its recurring suffix, the most common case.
        """
        key = _segment_key(segment)
        counts = table.get(outlet)
        # `get`, not indexing: a missing key would go through `Counter.__missing__`.
        count = counts.get(key, 0) if counts is not None else 0
        if count >= self.min_count and count >= self.min_share * self._titles.get(outlet, 0):
            return True
        return _is_generic_kicker(segment) or _names_outlet(key, outlet)


def _has_stems(text: str) -> bool:
    """Whether any word of `text` leaves an informative (English) stem.

    Looks in the stem table first, as `tokens` does: nearly every word is in it.
    """
    cache = _STEM_CACHES.get(DEFAULT_LANGUAGE, {})
    for word in text.split():
        stems = cache.get(word)
        if stems is None:
            stems = _word_stems(word, DEFAULT_LANGUAGE)
        if stems:
            return True
    return False


def _clean_title(title: str) -> str:
    """NFKC, ticker marks as segment separators, tags such as "(Video)" and "..." dropped."""
    text = unicodedata.normalize("NFKC", title)
    if _TICKER_HINT.search(text):
        # "+++ Liveblog +++ Headline": ticker marks delimit a segment like a colon.
        text = _TICKER_MARKS.sub(": ", text)
    if "(" in text or "[" in text:
        text = _PAREN_TAG.sub(" ", text)
    text = " ".join(text.split())
    if text.endswith(("...", "…")):
        text = _TRAILING_ELLIPSIS.sub("", text)
    return text.strip(" :")


@lru_cache(maxsize=1024)
def _prefix(text: str) -> tuple[str, str] | None:
    """("Kicker", "rest") for "Kicker: rest" or "Kicker - rest" (kicker of 2-60 characters).

    Cached (like `_suffix`) because `BoilerplateModel.observe` and `strip` split
    the same title back to back; a small cache holds it between the two calls.
    """
    found = _PREFIX_SEPARATOR.search(text, 2, _PREFIX_SEARCH_END)
    if found is None or found.start() > _SEGMENT_MAX:
        return None
    return text[: found.start()], text[found.end() :].lstrip()


@lru_cache(maxsize=1024)
def _suffix(text: str) -> tuple[str, str] | None:
    """("site.de", "rest") for "rest - site.de" or "rest | site.de" (suffix of 2-60 characters)."""
    # The end position leaves out a separator at index 0: a suffix needs text before it.
    found = _SUFFIX_SEPARATOR_REVERSED.search(text[::-1], 0, len(text) - 1)
    if found is None:
        return None
    # Reversed, the separator's span [start, end) is [len - end, len - start) in `text`.
    segment = text[len(text) - found.start() :].strip()
    if not 2 <= len(segment) <= _SEGMENT_MAX or not _SUFFIX_FORBIDDEN.isdisjoint(segment):
        return None
    return segment, text[: len(text) - found.end()].rstrip()


def _split_segments(title: str) -> tuple[str | None, str | None]:
    text = " ".join(title.split())
    prefix, suffix = _prefix(text), _suffix(text)
    return (prefix[0] if prefix else None, suffix[0] if suffix else None)
