"""German separable verbs: "Brandt tritt zurück" is one verb, "zurücktreten", split in two.

In a German main clause the particle of a separable verb moves to the end
("weist die Kritik zurück", "tritt zurück", "legt zu"). Left as a word of its
own, the particle looks like shared evidence between two headlines whose
verbs differ ("weist Kritik zurück" is a denial, "tritt zurück" a
resignation), while it says nothing without its verb. So a clause-final
particle is joined to the clause's finite verb ("zurückweist", "zurücktritt"),
and dropped when no verb can be found.

The finite verb is found without a part-of-speech tagger, by German
spelling: nouns and names are capitalized, so the first lowercase word of the
clause that is not a stop word is the verb ("Trainer Vogt *tritt* zurück").
A clause written without capitals (a headline rebuilt from a URL slug) gives
no such clue; its particle is only dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

# Particles of separable verbs that also stand as free words: a closed class
# of German grammar (Duden, "trennbare Verben"), not a list of news words.
PARTICLES = frozenset(
    {
        "ab",
        "an",
        "auf",
        "aus",
        "bei",
        "dar",
        "ein",
        "empor",
        "entgegen",
        "fest",
        "fort",
        "heim",
        "her",
        "heran",
        "herauf",
        "heraus",
        "herbei",
        "herein",
        "herum",
        "herunter",
        "hervor",
        "hin",
        "hinauf",
        "hinaus",
        "hinein",
        "hinzu",
        "los",
        "mit",
        "nach",
        "nieder",
        "vor",
        "voran",
        "voraus",
        "vorbei",
        "vorüber",
        "weg",
        "weiter",
        "wieder",
        "zu",
        "zurecht",
        "zurück",
        "zusammen",
    }
)
# Words that begin a new clause, so the word before them can end one.
_CONJUNCTIONS = frozenset({"und", "oder", "aber", "sondern", "doch", "denn"})
_CLAUSE_PUNCTUATION = ".,;:!?)\"'“”„»«›‹"
_DASHES = frozenset({"-", "–", "—", "|", "+++"})


def prefix_tree(words: Collection[str]) -> str:
    """A regular expression for exactly `words`, factored by shared prefixes.

    "a(?:b|n|u(?:f|s))" instead of "ab|an|auf|aus": at each position the
    search then tries a few branches instead of every word (three times faster
    on long leads; `aggregator.text` uses it for its word lists too). It matches
    the same strings as the plain alternation; only which word wins where two
    match at one position may differ.
    """
    tails: dict[str, list[str]] = {}
    for word in words:
        if word:
            tails.setdefault(word[0], []).append(word[1:])
    branches = [re.escape(first) + prefix_tree(rest) for first, rest in sorted(tails.items())]
    if not branches:
        return ""
    tree = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{tree})?" if "" in words else tree


# A particle where a clause could end: before clause punctuation, at the end,
# or before a dash or a conjunction standing alone. Particles as prepositions
# ("an", "auf", "mit", "nach", "zu") are in nearly every German sentence; this
# finds the few texts that can hold a separable verb without a Python loop.
# The lookahead for a particle's first letter is one test per word start, where
# the branches of the particles' tree would be tried one by one.
_CLAUSE_FINAL_PARTICLE = re.compile(
    r"\b(?=["
    + "".join(sorted({particle[0] for particle in PARTICLES}))
    + "])"
    + prefix_tree(PARTICLES)
    + r"\b(?:["
    + re.escape(_CLAUSE_PUNCTUATION)
    + r"]|\s*$|\s+(?:"
    + "|".join(re.escape(w) for w in sorted(_DASHES | _CONJUNCTIONS))
    + r")(?:\s|$))",
    re.IGNORECASE,
)


def join_separable_particles(text: str, is_stop_word: Callable[[str], bool]) -> list[str]:
    """The words of `text` with each clause-final particle joined to its clause's verb.

    `is_stop_word(word) -> bool` tells stop words apart (they are never the
    verb). Words are returned as written otherwise, so the caller folds,
    splits and stems them as usual.
    """
    words = text.split()
    if not _CLAUSE_FINAL_PARTICLE.search(text):
        return words
    return _join_particles(words, is_stop_word)


def _join_particles(words: list[str], is_stop_word: Callable[[str], bool]) -> list[str]:
    """`join_separable_particles` on words already split, without the quick test."""
    out: list[str | None] = list(words)
    start = 0
    for i, word in enumerate(words):
        core = word.strip(_CLAUSE_PUNCTUATION).casefold()
        ends_clause = (
            i + 1 == len(words)
            or word[-1] in _CLAUSE_PUNCTUATION
            or words[i + 1] in _DASHES
            or words[i + 1].casefold() in _CONJUNCTIONS
        )
        if core in PARTICLES and ends_clause and i > start:
            verb = _finite_verb(words, start, i, is_stop_word)
            if verb is not None:
                out[verb] = core + words[verb].strip(_CLAUSE_PUNCTUATION)
            out[i] = None
        if ends_clause or word in _DASHES:
            start = i + 1
    return [word for word in out if word is not None]


def _finite_verb(
    words: list[str], start: int, end: int, is_stop_word: Callable[[str], bool]
) -> int | None:
    """Index of the clause's first lowercase non-stop word, if the clause has capitals."""
    clause = words[start:end]
    if not any(w[:1].isupper() for w in clause):
        return None
    for offset, word in enumerate(clause):
        core = word.strip(_CLAUSE_PUNCTUATION)
        if core[:1].islower() and core.casefold() not in PARTICLES and not is_stop_word(core):
            return start + offset
    return None
