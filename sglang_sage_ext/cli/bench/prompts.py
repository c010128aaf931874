"""Seeded random token prompts (the same for both backends), and the model's vocabulary size."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

#: Ids below this are left out (special tokens sit at the start of most vocabularies).
FIRST_ID = 10
DEFAULT_VOCAB = 1000


def vocab_size(model_path: str | None, model_info: dict[str, Any] | None = None) -> int:
    """`vocab_size` from the model's config.json (local dirs), else DEFAULT_VOCAB."""
    candidates = [model_path, (model_info or {}).get("model_path")]
    for candidate in candidates:
        if not candidate:
            continue
        config = Path(str(candidate)).expanduser() / "config.json"
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        size = data.get("vocab_size") or (data.get("text_config") or {}).get("vocab_size")
        if isinstance(size, int) and size > FIRST_ID + 1:
            return size
    return DEFAULT_VOCAB


def random_prompts(count: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    """`count` prompts of `length` ids; distinct first ids so no two share a radix prefix."""
    rng = random.Random(seed)
    span = range(FIRST_ID, vocab)
    firsts = rng.sample(span, min(count, len(span)))
    prompts = []
    for i in range(count):
        first = firsts[i % len(firsts)]
        prompts.append([first] + [rng.randrange(FIRST_ID, vocab) for _ in range(length - 1)])
    return prompts
