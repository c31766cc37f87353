"""Moderation quality on the labelled evasion set, and cost per KB as the word list grows.

Quality: precision and recall of the shipped global list over the labelled
set in `tests/support/moderation_set.py` (traditional characters, look-alike
letters, diacritics, symbols and invisible characters slipped inside terms;
near misses that must pass), against a baseline that matches the same list
over case-folded text only.

Cost: Aho-Corasick vs a loop over the words.

A mixed Chinese/English list (10,000 terms, half each) over 1 MB of mixed
text. The relaychain matcher (normalisation with the offset map, one
Aho-Corasick pass, whole-word and allowlist checks) should cost the same per
KB whatever the list size (most of it is normalisation, which does not
depend on the list); the naive baseline (`str.find` for every term,
over the case-folded text) grows with the list, so it runs on the small
sizes only. Prints a markdown table.

    python bench/moderation.py [--text-kb 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relaychain.agents.moderation import Matcher, normalise, read_word_list  # noqa: E402
from tests.support.moderation_set import ALLOWLIST, EVASIONS, NEAR_MISSES  # noqa: E402

GLOBAL_LIST = Path(__file__).resolve().parents[1] / "relaychain" / "defaults" / "wordlists" / "global.txt"

_COMMON_HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
_LATIN = "abcdefghijklmnopqrstuvwxyz"


def word_list(size: int, rng: random.Random) -> dict[str, str]:
    terms: dict[str, str] = {}
    categories = ("adult", "violence", "ads", "politics")
    while len(terms) < size:
        if len(terms) % 2:
            term = "".join(rng.choice(_COMMON_HANZI) for _ in range(rng.randint(2, 4)))
        else:
            term = "".join(rng.choice(_LATIN) for _ in range(rng.randint(5, 9)))
        terms.setdefault(term, rng.choice(categories))
    return terms


def mixed_text(kilobytes: int, rng: random.Random) -> str:
    """About `kilobytes` KB of UTF-8: Chinese runs and English words, with punctuation."""
    parts: list[str] = []
    size = 0
    while size < kilobytes * 1024:
        if rng.random() < 0.5:
            part = "".join(rng.choice(_COMMON_HANZI) for _ in range(rng.randint(4, 20))) + "，"
        else:
            part = (
                " ".join(
                    "".join(rng.choice(_LATIN) for _ in range(rng.randint(2, 9))) for _ in range(rng.randint(3, 10))
                )
                + ". "
            )
        parts.append(part)
        size += len(part.encode("utf-8"))
    return "".join(parts)


def naive_find(terms: dict[str, str]) -> Callable[[str], int]:
    words = [term.casefold() for term in terms]

    def find(text: str) -> int:
        haystack = text.casefold()
        found = 0
        for word in words:
            start = haystack.find(word)
            while start >= 0:
                found += 1
                start = haystack.find(word, start + 1)
        return found

    return find


def quality(caught: Callable[[str, str | None], bool]) -> tuple[float, float, int, int]:
    """Precision, recall, missed evasions, flagged near misses; `caught(text, category)` says if it was found."""
    true_positives = sum(caught(text, category) for text, category, _ in EVASIONS)
    false_positives = sum(caught(text, None) for text in NEAR_MISSES)
    flagged = true_positives + false_positives
    precision = true_positives / flagged if flagged else 1.0
    return precision, true_positives / len(EVASIONS), len(EVASIONS) - true_positives, false_positives


def print_quality() -> None:
    terms = read_word_list(GLOBAL_LIST)
    matcher = Matcher(terms, ALLOWLIST)
    folded = {term.casefold(): category for term, category in terms.items()}

    def by_matcher(text: str, category: str | None) -> bool:
        found = {m.category for m in matcher.find(text)}
        return bool(found) if category is None else category in found

    def by_casefold(text: str, category: str | None) -> bool:
        haystack = text.casefold()
        found = {c for term, c in folded.items() if term in haystack}
        return bool(found) if category is None else category in found

    print(f"labelled set: {len(EVASIONS)} evasions, {len(NEAR_MISSES)} near misses (Chinese and English)\n")
    print("| matcher | precision | recall | evasions missed | near misses flagged |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, caught in (("relaychain (folding)", by_matcher), ("case-fold substring baseline", by_casefold)):
        precision, recall, missed, flagged = quality(caught)
        print(f"| {name} | {precision:.2f} | {recall:.2f} | {missed} | {flagged} |")
    print()


def best_of(repeat: int, call: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-kb", type=int, default=1024)
    parser.add_argument("--baseline-kb", type=int, default=64, help="text size for the naive baseline")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print_quality()
    rng = random.Random(20240601)
    full = word_list(10_000, rng)
    text = mixed_text(args.text_kb, rng)
    small_text = text[: len(text) * args.baseline_kb // args.text_kb]
    text_kb = len(text.encode("utf-8")) / 1024
    small_kb = len(small_text.encode("utf-8")) / 1024

    print(
        f"text: {text_kb:.0f} KB mixed Chinese/English; baseline on the first {small_kb:.0f} KB; best of {args.repeat}\n"
    )
    print(
        "| terms | build (ms) | matcher ms/KB | of which normalisation | matches | naive loop ms/KB | matcher speed-up |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in (100, 1_000, 10_000):
        terms = dict(list(full.items())[:size])
        started = time.perf_counter()
        matcher = Matcher(terms)
        build_ms = (time.perf_counter() - started) * 1000
        matches = len(matcher.find(text))
        per_kb = best_of(args.repeat, lambda m=matcher: m.find(text)) * 1000 / text_kb
        normalise_per_kb = best_of(args.repeat, lambda: normalise(text)) * 1000 / text_kb
        if size <= 1_000:
            naive = naive_find(terms)
            naive_per_kb = best_of(args.repeat, lambda n=naive: n(small_text)) * 1000 / small_kb
            naive_cell, ratio = f"{naive_per_kb:.3f}", f"{naive_per_kb / per_kb:.1f}x"
        else:
            naive_cell, ratio = "not run", "-"
        print(
            f"| {size:,} | {build_ms:.1f} | {per_kb:.3f} | {normalise_per_kb:.3f} | {matches:,} | {naive_cell} | {ratio} |"
        )


if __name__ == "__main__":
    main()
