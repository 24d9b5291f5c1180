"""How far the offline token heuristic is from an exact vocabulary.

Run: .venv/bin/python bench/token_heuristic.py
Needs `quicktok` (pip install clearapi[tokens]). Prints, per corpus, the relative error
of `clearapi.finetune.tokens.heuristic_count` against o200k_base on chunks of ~200-2000
characters: mean, 5th/95th percentile and worst case. The bound quoted in tokens.py
(HEURISTIC_ERROR_BOUND) comes from these numbers.
"""

from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

import quicktok

from clearapi.finetune.tokens import HEURISTIC_ERROR_BOUND, heuristic_count

MULTILINGUAL = [
    "Der schnelle braune Fuchs springt über den faulen Hund. Die Straßenbahn fährt um halb acht.",
    "Le petit prince demanda: « S'il vous plaît… dessine-moi un mouton ! » Et je l'ai dessiné.",
    "Быстрая коричневая лиса перепрыгивает через ленивую собаку. Москва — столица России.",
    "敏捷的棕色狐狸跳过了懒狗。北京是中华人民共和国的首都，也是政治和文化中心。",
    "素早い茶色の狐がのろまな犬を飛び越えた。東京は日本の首都であり、最大の都市です。",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca?",
    "빠른 갈색 여우가 게으른 개를 뛰어넘었다. 서울은 대한민국의 수도이다.",
]


def chunks(text: str, rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        if len(text) < 300:
            break
        size = rng.randint(200, 2000)
        start = rng.randint(0, max(0, len(text) - size))
        out.append(text[start:start + size])
    return out


def main() -> int:
    rng = random.Random(7)
    site = Path(quicktok.__file__).resolve().parents[1]
    prose = "\n".join(p.read_text(errors="ignore") for p in sorted(site.glob("*.dist-info/METADATA"))[:60])
    code = "\n".join(p.read_text(errors="ignore") for p in sorted((site / "openai" / "resources").rglob("*.py"))[:40])
    multi = [" ".join(rng.sample(MULTILINGUAL * 6, 12)) for _ in range(40)]
    corpora = {"prose (METADATA)": chunks(prose, rng, 300), "python code": chunks(code, rng, 300),
               "multilingual": multi}
    enc = quicktok.get_encoding("o200k_base")
    worst_overall = 0.0
    for name, texts in corpora.items():
        errs = []
        for t in texts:
            exact = len(enc.encode_ordinary(t))
            if exact:
                errs.append((heuristic_count(t) - exact) / exact)
        errs.sort()
        worst = max(abs(errs[0]), abs(errs[-1]))
        worst_overall = max(worst_overall, worst)
        p5, p95 = errs[int(0.05 * len(errs))], errs[int(0.95 * len(errs)) - 1]
        print(f"{name:18s} n={len(errs):4d} mean={statistics.mean(errs):+.3f} "
              f"p5={p5:+.3f} p95={p95:+.3f} worst={worst:.3f}")
    print(f"stated bound ±{HEURISTIC_ERROR_BOUND:.2f}; worst seen {worst_overall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
