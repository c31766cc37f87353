"""The moderation library: normalisation, whole words, allowlist, offsets, reloadable lists."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

from relaychain.agents.moderation import Matcher, WordLists, normalise, read_word_list
from relaychain.schemas.config import AppConfig
from tests.support.moderation_set import ALLOWLIST, EVASIONS, NEAR_MISSES

DEFAULTS = Path(__file__).resolve().parents[2] / "relaychain" / "defaults"

ACTIONS = {"adult": "block", "violence": "block", "ads": "mask", "politics": "flag"}

DIRTY = [
    ("我们来聊色情话题", "adult"),
    ("这是色 情内容", "adult"),
    ("色\u200b情", "adult"),
    ("Looking for SEX tonight", "adult"),
    ("ｓｅｘ chat", "adult"),
    ("s.e.x chat", "adult"),
    ("s-e-x chat", "adult"),
    ("free porn here", "adult"),
    ("PoRn", "adult"),
    ("我要杀人", "violence"),
    ("I will kill you", "violence"),
    ("there is a bomb.", "violence"),
    ("炸 弹", "violence"),
    ("快加微信领红包", "ads"),
    ("加·微·信", "ads"),
    ("兼职刷单日结", "ads"),
    ("Buy   Followers cheap", "ads"),
    ("ＦＲＥＥ ＭＯＮＥＹ", "ads"),
    ("如何翻墙", "politics"),
]

CLEAN = [
    "Sussex is a county in England",
    "The class assessment is on Monday",
    "Essex and Middlesex",
    "We saw a killer whale, 看杀人鲸表演",
    "Two bath bombs and one bath bomb",
    "The skills of a bomber jacket designer",
    "this ex-colleague is helpful",
    "his exam went well",
    "请加入我们的微博话题",
    "色彩鲜艳，情感丰富",
    "The pornography laws were discussed",
    "Shotgun seats, free, money back",
    "Kill-switch engineering",
]


@pytest.fixture(scope="module")
def shipped() -> Matcher:
    return Matcher(read_word_list(DEFAULTS / "wordlists" / "global.txt"), allowlist=ALLOWLIST)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    terms = read_word_list(DEFAULTS / "wordlists" / "global.txt")
    return Matcher(terms, allowlist=["杀人鲸", "bath bomb"])


@pytest.mark.parametrize(("text", "category"), DIRTY)
def test_every_dirty_text_is_caught_in_its_category(matcher: Matcher, text: str, category: str) -> None:
    assert category in {m.category for m in matcher.find(text)}


@pytest.mark.parametrize("text", CLEAN)
def test_no_clean_text_is_touched(matcher: Matcher, text: str) -> None:
    assert matcher.find(text) == []


@pytest.mark.parametrize(("text", "category", "trick"), EVASIONS, ids=[trick for _, _, trick in EVASIONS])
def test_every_labelled_evasion_is_caught(shipped: Matcher, text: str, category: str, trick: str) -> None:
    found = shipped.find(text)
    assert category in {m.category for m in found}, trick


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_pass(shipped: Matcher, text: str) -> None:
    assert shipped.find(text) == []


def test_folding_keeps_one_original_offset_per_character() -> None:
    """Masking replaces the original characters: the span covers the evasion exactly, tricks included."""
    matcher = Matcher({"sex": "adult", "色情": "adult", "代开发票": "ads"})
    text = "a ѕе\u0301💋x b 色❤️情 c 代開發票 d"
    spans = [text[m.start : m.end] for m in matcher.find(text)]
    assert spans == ["ѕе\u0301💋x", "色❤️情", "代開發票"]


def test_traditional_terms_in_a_list_match_simplified_text() -> None:
    [found] = Matcher({"發票": "ads"}).find("开发票")
    assert (found.start, found.end) == (1, 3)


def test_symbols_between_words_do_not_join_them() -> None:
    assert normalise("www.sex.com").text == "www.sex.com"
    assert normalise("I ❤ you").text == "i ❤ you"
    assert normalise("好。感谢").text == "好。感谢", "sentence punctuation between ideographs stays"


def test_offsets_point_into_the_original_text(matcher: Matcher) -> None:
    text = "Hello ｓ.ｅ.ｘ and 敏感 加 微 信 ok"
    found = {m.category: text[m.start : m.end] for m in matcher.find(text)}
    assert found == {"adult": "ｓ.ｅ.ｘ", "ads": "加 微 信"}


def test_expanding_characters_keep_offsets_right() -> None:
    text = "Straße ﬁle sex"
    [found] = Matcher({"sex": "adult"}).find(text)
    assert (found.start, found.end) == (11, 14)
    normalised = normalise(text)
    assert normalised.text == "strasse file sex"
    assert normalised.span(0, len(normalised.text)) == (0, len(text))


def test_separators_only_collapse_between_single_letters_or_cjk() -> None:
    assert normalise("s . e . x").text == "sex"
    assert normalise("敏 感").text == "敏感"
    assert normalise("this ex").text == "this ex"
    assert normalise("好，感谢").text == "好,感谢", "sentence punctuation is not a slipped separator"


def _ascii_texts() -> list[str]:
    """Every ASCII text of the labelled sets, then seeded random ones made of what the ASCII scans look for:
    single letters and words, every separator and symbol, whitespace runs, at the edges too."""
    labelled = [text for text, *_ in (*EVASIONS, *DIRTY)] + [*NEAR_MISSES, *CLEAN]
    pieces = ["s", "e", "x", "A", "7", "sex", "bomb", "I", "kill", "ab", "_", "__", " ", "  ", "\t", "\n \n", "\x1c"]
    pieces += list(".-*|/\\~+'`:#$%&<=>@^,!?()[]{}\"")
    rng = random.Random(13)
    generated = ["".join(rng.choices(pieces, k=rng.randint(1, 24))) for _ in range(5000)]
    return [text for text in [*labelled, *generated] if text.isascii()]


def test_the_ascii_scans_drop_exactly_what_the_full_scans_drop() -> None:
    """Pure-ASCII text takes fewer scans (no invisible characters, no ideographs can be there) and a byte table
    to fold: same ranges, same text, same offsets."""
    module = sys.modules[normalise.__module__]
    texts = _ascii_texts()
    assert len(texts) > 5000
    for text in texts:
        assert module._dropped_ranges_ascii(text) == module._dropped_ranges_any(text), repr(text)
        fast, full = normalise(text), module._normalised(text, module._dropped_ranges_any(text))
        assert fast.text == full.text, repr(text)
        assert [fast.span(i, i + 1) for i in range(len(fast.text))] == [
            full.span(i, i + 1) for i in range(len(full.text))
        ]


def test_allowlist_suppresses_only_inside_its_occurrence() -> None:
    matcher = Matcher({"杀人": "violence"}, allowlist=["杀人鲸"])
    text = "杀人鲸很可爱，但他想杀人"
    [found] = matcher.find(text)
    assert text[found.start : found.end] == "杀人"
    assert found.start == text.rindex("杀人")


def test_longest_term_wins_where_two_start_together() -> None:
    matcher = Matcher({"free": "ads", "free money": "ads"})
    [found] = matcher.find("get free money now")
    assert found.term == "free money"


def test_word_list_format(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("# comment\n\nsex\tadult\n  plainterm  \n", encoding="utf-8")
    assert read_word_list(path) == {"sex": "adult", "plainterm": "uncategorised"}


def _config(lists: list[str], business_lists: list[str] = ()) -> AppConfig:
    return AppConfig.model_validate(
        {
            "models": {
                "m": {
                    "provider": "openai",
                    "tokenizer": "tiktoken:cl100k_base",
                    "context_window": 100,
                    "max_output_tokens": 10,
                    "price": {"input_per_million": "0", "output_per_million": "0"},
                }
            },
            "output_schemas": {"s": "s.json"},
            "moderation": {"lists": lists, "actions": ACTIONS},
            "businesses": {
                "b": {
                    "default_model": "m",
                    "allowed_models": ["m"],
                    "templates": {"default": "t.j2"},
                    "output_schema": "s",
                    "steps": ["generate"],
                    "moderation": {"lists": list(business_lists), "allowlist": ["bath bomb"]},
                },
                "plain": {
                    "default_model": "m",
                    "allowed_models": ["m"],
                    "templates": {"default": "t.j2"},
                    "output_schema": "s",
                    "steps": ["generate"],
                },
            },
        }
    )


async def test_business_lists_add_to_the_global_list(tmp_path: Path) -> None:
    (tmp_path / "global.txt").write_text("bomb\tviolence\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("best ever\tad_law\n", encoding="utf-8")
    lists = WordLists(_config(["global.txt"], ["b.txt"]), tmp_path)
    own = await lists.matcher("b")
    shared = await lists.matcher("plain")
    assert [m.category for m in own.find("the best ever bomb")] == ["ad_law", "violence"]
    assert own.find("a bath bomb") == []
    assert [m.category for m in shared.find("the best ever bomb")] == ["violence"]


async def test_an_edited_list_is_picked_up_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "global.txt"
    path.write_text("bomb\tviolence\n", encoding="utf-8")
    now = [0.0]
    lists = WordLists(_config(["global.txt"]), tmp_path, check_interval_s=5.0, clock=lambda: now[0])
    before = await lists.matcher("b")
    assert before.find("new spam word") == []

    path.write_text("bomb\tviolence\nspam word\tads\n", encoding="utf-8")
    os.utime(path, (1, 1))
    assert (await lists.matcher("b")) is before, "checked at most every check_interval_s"
    now[0] = 6.0
    after = await lists.matcher("b")
    assert [m.category for m in after.find("new spam word")] == ["ads"]
    assert [m.category for m in before.find("a bomb")] == ["violence"], "the old version stays whole"


async def test_a_broken_reload_keeps_the_previous_lists(tmp_path: Path) -> None:
    path = tmp_path / "global.txt"
    path.write_text("bomb\tviolence\n", encoding="utf-8")
    now = [0.0]
    lists = WordLists(_config(["global.txt"]), tmp_path, check_interval_s=1.0, clock=lambda: now[0])
    await lists.load()
    path.unlink()
    now[0] = 2.0
    matcher = await lists.matcher("b")
    assert [m.category for m in matcher.find("a bomb")] == ["violence"]


async def test_the_shipped_lists_load() -> None:
    config = _config(["wordlists/global.txt"], ["wordlists/ops_push.txt", "wordlists/car_blog.txt"])
    lists = WordLists(config, DEFAULTS)
    matcher = await lists.matcher("b")
    assert {m.category for m in matcher.find("全网最低价，绝对安全")} == {"ad_law"}
