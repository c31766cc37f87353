"""A labelled moderation set: evasions of the shipped global list that must be caught, near misses that must pass.

Shared by `tests/agents/test_moderation.py` (every case must hold) and
`bench/moderation.py` (precision and recall). The terms are the ones in
`relaychain/defaults/wordlists/global.txt`; the allowlist is the one the
tests use.
"""

from __future__ import annotations

ALLOWLIST = ("杀人鲸", "bath bomb")

# (text, category it must be caught in, the trick)
EVASIONS: tuple[tuple[str, str, str], ...] = (
    ("請幫我代開發票", "ads", "traditional characters"),
    ("兼職刷單日結", "ads", "traditional characters"),
    ("我要殺人", "violence", "traditional characters"),
    ("有炸彈", "violence", "traditional characters"),
    ("教你翻牆", "politics", "traditional characters"),
    ("顛覆政權", "politics", "traditional characters"),
    ("免费領取红包", "ads", "simplified and traditional mixed"),
    ("来裸💋聊吧", "adult", "emoji inside a Chinese term"),
    ("约\u200d炮", "adult", "zero-width joiner"),
    ("色❤️情网站", "adult", "emoji with a variation selector"),
    ("快加✨微✨信", "ads", "symbols between ideographs"),
    ("looking for ѕех tonight", "adult", "Cyrillic look-alikes"),
    ("free ρorn here", "adult", "Greek look-alike"),
    ("sèx chat", "adult", "accented letter"),
    ("po\u0308rn videos", "adult", "decomposed diacritic"),
    ("I will k\u200bill you", "violence", "zero-width space"),
    ("a bo😀mb in the station", "violence", "emoji inside a word"),
    ("get frее money", "ads", "Cyrillic e"),
    ("a coup d'état", "politics", "accented letter"),
    ("there is a Вomb", "violence", "Cyrillic capital look-alike"),
    ("s\ufe0fe\ufe0fx tonight", "adult", "variation selectors"),
    ("buy fοllοwers now", "ads", "Greek omicron"),
    ("regime çhange", "politics", "cedilla"),
    ("ＳＥ✱Ｘ", "adult", "full width with a symbol"),
)

# Texts that must pass untouched: ordinary words close to a listed term.
NEAR_MISSES: tuple[str, ...] = (
    "Sussex and Essex are counties",
    "a bombe glacée for dessert",
    "I ❤ my ex, we are still friends",
    "the Ѕextant is a navigation tool",
    "his skill, you know, is rare",
    "the pornography laws were discussed",
    "see www.example.com for the killer app",
    "我们去看殺人鯨表演",
    "加个微信群聊聊天",
    "色彩鲜艳，情感丰富",
    "杀毒软件的人员",
    "颠覆性的政策分析",
    "翻过那道墙就到了",
    "免费的领带取走吧",
    "炸鸡弹牙很好吃",
    "Мой сосед — хороший человек",
    "Η καλή μέρα φαίνεται από το πρωί",
    "naïve café résumé",
    "the class assessment is on Monday",
    "Kill-switch engineering",
)
