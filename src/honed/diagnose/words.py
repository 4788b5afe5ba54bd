"""Words as the diagnosis counts them: one tokenizer shared by planting a rule and scoring a reflection.

A trigger word "occurs in" an input exactly when a keyword search for it (case-insensitive, on word
boundaries) finds it there; both go through `words_of`/`contains_word`, so the examples a hidden rule
relabels are precisely those in which a reflection could find the word.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable

_TOKEN = re.compile(r"\w+")

# Function words (and contraction fragments) that cannot carry a content-based rule.
STOPWORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "aren",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
    "cannot", "could", "couldn", "did", "didn", "do", "does", "doesn", "doing", "don", "down", "during", "each",
    "few", "for", "from", "further", "had", "hadn", "has", "hasn", "have", "haven", "having", "he", "her", "here",
    "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its", "itself",
    "just", "ll", "me", "more", "most", "much", "must", "mustn", "my", "myself", "no", "nor", "not", "now", "of",
    "off", "on", "once", "one", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own",
    "re", "same", "shan", "she", "should", "shouldn", "so", "some", "such", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "upon", "us", "ve", "very", "was", "wasn", "we", "were", "weren", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "won", "would", "wouldn", "yet", "you", "your",
    "yours", "yourself", "yourselves", "get", "got", "gets", "even", "ever", "every", "many", "may", "might",
    "like", "still", "though", "whether", "within", "without", "across", "along", "among", "around", "say",
    "says", "said"
})

MIN_WORD_LENGTH = 3
TRIGGER_BAND = (0.10, 0.30)      # share of training inputs a trigger word should occur in
FALLBACK_BAND = (0.05, 0.40)     # used only when no word falls in the band above


def words_of(text: str) -> set[str]:
    """The distinct lower-cased word tokens of `text` (runs of letters, digits and underscores)."""
    return set(_TOKEN.findall(str(text).lower()))


def contains_word(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` as a whole word, ignoring case (the same test as a keyword search)."""
    return word.lower() in words_of(text)


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """A case-insensitive whole-word pattern for `keyword` (which may contain spaces or hyphens)."""
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)", re.IGNORECASE)


def is_content_word(word: str) -> bool:
    return word.isascii() and word.isalpha() and len(word) >= MIN_WORD_LENGTH and word not in STOPWORDS


def document_frequency(texts: Iterable[str]) -> tuple[Counter[str], int]:
    """How many of `texts` contain each content word, and how many texts there are."""
    counts: Counter[str] = Counter()
    total = 0
    for text in texts:
        total += 1
        counts.update(w for w in words_of(text) if is_content_word(w))
    return counts, total


def eligible_triggers(texts: Iterable[str], exclude: Iterable[str] = (),
                      band: tuple[float, float] = TRIGGER_BAND) -> list[tuple[str, float]]:
    """Content words occurring in a share of `texts` inside `band`, sorted by word, with that share."""
    counts, total = document_frequency(texts)
    if not total:
        return []
    banned = {w.lower() for w in exclude}
    low, high = band
    return sorted((w, n / total) for w, n in counts.items() if low <= n / total <= high and w not in banned)


def choose_trigger(texts: list[str], *, seed: int,
                   exclude: Iterable[str] = ()) -> tuple[str, float, tuple[float, float]]:
    """A seeded choice among the eligible trigger words: (word, share of texts containing it, band used).

    Raises ValueError when no content word occurs in even the fallback band of texts (one-word inputs).
    """
    exclude = list(exclude)
    for band in (TRIGGER_BAND, FALLBACK_BAND):
        eligible = eligible_triggers(texts, exclude, band)
        if eligible:
            word, share = random.Random(f"trigger:{seed}").choice(eligible)
            return word, share, band
    raise ValueError(f"no content word occurs in {FALLBACK_BAND[0]:.0%}-{FALLBACK_BAND[1]:.0%} of the "
                     f"{len(texts)} training inputs")
