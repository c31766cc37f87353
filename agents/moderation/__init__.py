"""Sensitive-word matching: normalisation, the Aho-Corasick matcher, reloadable word lists."""

from relaychain.agents.moderation.matcher import Match, Matcher
from relaychain.agents.moderation.normalise import NormalisedText, normalise, normalise_term
from relaychain.agents.moderation.wordlists import UNCATEGORISED, WordLists, read_word_list

__all__ = [
    "UNCATEGORISED",
    "Match",
    "Matcher",
    "NormalisedText",
    "WordLists",
    "normalise",
    "normalise_term",
    "read_word_list",
]
