"""A labelled retrieval set over `examples/cars/specs`: Chinese and English sheets, paraphrased and cross-language questions.

Shared by `tests/agents/test_retrieval.py` and `bench/retrieval.py`. Each
question names the one sheet that answers it; `kind` says what makes it
hard: `paraphrase` (the question's words are not the sheet's), `cross`
(asked in the other language from the sheet), `named` (the car is named, in
the sheet's own language), `traditional` (traditional characters against a
simplified sheet, or the reverse).
"""

from __future__ import annotations

from pathlib import Path

CARS = Path(__file__).resolve().parents[2] / "examples" / "cars" / "specs"

# (question, the sheet that answers it, kind)
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("What is the WLTP range of the Lumaro Pathfinder X?", "lumaro-pathfinder-x.pdf", "named"),
    ("How fast does the Ostrava Vektor R accelerate from 0 to 100?", "ostrava-vektor-r.pdf", "named"),
    ("汉江L是几座的车？", "longteng-hanjiang-l.txt", "named"),
    ("轻羽mini慢充充满需要几个小时？", "xinghe-qingyu-mini.md", "named"),
    ("Which small city car turns in a 9.4 metre circle?", "kestrel-brio-urban.txt", "paraphrase"),
    ("Which saloon can swap its battery at a station in about three minutes?", "qilin-tengyun-s9.md", "paraphrase"),
    ("Which estate car was built for long winter drives in Norway?", "halvorsen-nordkap-e7.md", "paraphrase"),
    ("Which coupe has carbon-ceramic brakes and an active rear wing?", "ostrava-vektor-r.pdf", "paraphrase"),
    ("Which hatchback is made in Valencia?", "maraveth-solenne-4.txt", "paraphrase"),
    ("哪款车适合七口之家长途出行，还不用担心补能？", "longteng-hanjiang-l.txt", "paraphrase"),
    ("哪款电动皮卡能拖游艇？", "jinlong-taihang-x.txt", "paraphrase"),
    ("哪款小车在老城区窄巷里好停车？", "xinghe-qingyu-mini.md", "paraphrase"),
    ("麒麟腾云S9的CLTC续航是多少公里？", "qilin-tengyun-s9.md", "cross"),
    ("Kestrel Brio Urban 在英国卖多少钱？", "kestrel-brio-urban.txt", "cross"),
    ("Lumaro Pathfinder X 能拖多重的拖车？", "lumaro-pathfinder-x.pdf", "cross"),
    ("What is the towing capacity of the Jinlong Taihang X pickup?", "jinlong-taihang-x.txt", "cross"),
    ("How far can the Xinghe Qingyu mini go on one charge?", "xinghe-qingyu-mini.md", "cross"),
    ("What is the electric-only range of the Longteng Hanjiang L plug-in hybrid?", "longteng-hanjiang-l.txt", "cross"),
    ("Which electric SUV has a lidar on the roof and a camping mode?", "fenghuang-yunque-7.md", "cross"),
    ("雲雀7的電池容量是多少？", "fenghuang-yunque-7.md", "traditional"),
    ("太行X的涉水深度是多少？", "jinlong-taihang-x.txt", "traditional"),
    ("漢江L的虧電油耗是多少？", "longteng-hanjiang-l.txt", "traditional"),
)
