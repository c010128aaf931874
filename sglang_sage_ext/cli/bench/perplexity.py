"""`bench perplexity`: token-level perplexity of a text under both backends.

The text is tokenized once with the model's own tokenizer (transformers, local files), cut
into sliding windows of `context_length` tokens with `stride`, and each window is sent as
`input_ids` with `return_logprob` from the first token it scores (`logprob_start_len`), so
the server returns exactly the prompt logprobs of the tokens that window scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sglang_sage_ext.cli.bench import client, metrics

#: Gates this command reports (see thresholds.GATES).
GATES = ("ppl_increase_pct",)


class TextError(ValueError):
    """The text or tokenizer could not be loaded; the message says what to pass instead."""


def load_text(text_file: str | None, hf_dataset: str | None) -> tuple[str, str]:
    """(text, source description) from a file or `NAME[:CONFIG[:SPLIT]]` on the Hub."""
    if text_file:
        path = Path(text_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TextError(
                f"--text-file {text_file} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                f"at offset {exc.start}); convert it to UTF-8"
            ) from None
        except OSError as exc:
            raise TextError(f"cannot read --text-file {text_file}: {exc.strerror or exc}") from None
        if not text.strip():
            raise TextError(
                f"--text-file {text_file} is empty (no text to score); pass a file with text"
            )
        return text, str(path)
    if not hf_dataset:
        raise TextError("give --text-file FILE or --hf-dataset wikitext:wikitext-2-raw-v1:test")
    name, _, rest = hf_dataset.partition(":")
    config, _, split = rest.partition(":")
    try:
        import datasets
    except ImportError:
        raise TextError("--hf-dataset needs `pip install datasets`; or pass --text-file") from None
    try:
        data = datasets.load_dataset(name, config or None, split=split or "test")
    except Exception as exc:
        raise TextError(
            f"cannot load {hf_dataset!r} ({type(exc).__name__}: {str(exc)[:300]}); "
            "offline, pass --text-file"
        ) from None
    column = "text" if "text" in data.column_names else data.column_names[0]
    text = "\n\n".join(str(t) for t in data[column])
    if not text.strip():
        raise TextError(f"--hf-dataset {hf_dataset}: column {column!r} has no text to score")
    return text, f"hf:{hf_dataset}"


def tokenize(text: str, tokenizer_path: str) -> tuple[list[int], int | None]:
    """(token ids without special tokens, bos id or None) with the model's tokenizer."""
    local = tokenizer_path.startswith(("/", "./", "../", "~"))
    if local and not Path(tokenizer_path).expanduser().exists():
        raise TextError(
            f"tokenizer {tokenizer_path!r} does not exist; pass --tokenizer PATH (a local "
            "model or tokenizer dir)"
        )
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_path)
    except Exception as exc:
        raise TextError(
            f"cannot load the tokenizer from {tokenizer_path!r} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); pass --tokenizer PATH (a local model or tokenizer dir)"
        ) from None
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids], tok.bos_token_id


def aligned_logprobs(entries: Sequence[Any], expected: Sequence[int], where: str) -> list[float]:
    """The logprobs of `expected` (the last len(expected) prompt tokens) from SGLang's entries.

    Entries are `[logprob, token_id, text]` per prompt position from logprob_start_len on; the
    first is always null. SGLang reports token ids >= vocab_size - 1 as 0 (it clips image-hash
    ids), so a reported 0 matches any expected id.
    """
    want = len(expected)
    tail = list(entries[-want:]) if want else []
    if len(tail) != want:
        raise client.ClientError(f"{where}: expected {want} prompt logprobs, got {len(tail)}")
    values: list[float] = []
    for offset, (entry, token) in enumerate(zip(tail, expected, strict=True)):
        if not isinstance(entry, (list, tuple)) or len(entry) < 2:
            raise client.ClientError(
                f"{where}: malformed prompt logprob entry {str(entry)[:80]!r} "
                "(expected [logprob, token_id, text])"
            )
        try:
            got = int(entry[1]) if entry[1] is not None else None
        except (TypeError, ValueError, OverflowError):
            raise client.ClientError(f"{where}: token id {entry[1]!r} is not an integer") from None
        if got != int(token) and got != 0:
            raise client.ClientError(
                f"{where}: prompt token {offset} from the end is {got}, expected {token}: "
                "the server's logprobs do not line up with the text"
            )
        if entry[0] is None:
            raise client.ClientError(
                f"{where}: the server returned no logprob (null: -inf or NaN) for token {token} "
                f"at offset {offset}"
            )
        try:
            lp = float(entry[0])
        except (TypeError, ValueError):
            raise client.ClientError(f"{where}: logprob {entry[0]!r} is not a number") from None
        if not math.isfinite(lp) or lp > metrics.MAX_LOGPROB:
            raise client.ClientError(
                f"{where}: logprob {lp} for token {token} at offset {offset} is not a finite "
                "value <= 0: this server's model output is broken"
            )
        values.append(lp)
    return values


def score_windows(
    base_url: str,
    ids: Sequence[int],
    windows: Sequence[tuple[int, int, int]],
    bos_id: int | None,
    advance: Any = None,
) -> list[float]:
    """Logprobs of every scored token, in text order."""
    lps: list[float] = []
    head = [bos_id] if bos_id is not None else []
    for begin, end, first in windows:
        window = head + list(ids[begin:end])
        start = len(head) + first - begin
        # SGLang's entry at logprob_start_len is always None (no logprob for the token it
        # starts at), so ask from one position earlier to get the logprob of token `start`.
        reply = client.generate(
            base_url,
            input_ids=window,
            max_new_tokens=1,
            return_logprob=True,
            logprob_start_len=max(start - 1, 0),
        )
        entries = client.meta_list(
            reply, "input_token_logprobs", " (does this server support return_logprob?)"
        )
        scored = aligned_logprobs(entries, ids[first:end], f"window {begin}:{end}")
        lps.extend(scored)
        if advance is not None:
            advance()
    return lps


def summarize(lps: Sequence[float]) -> dict[str, Any]:
    nll = -sum(lps) / len(lps) if lps else math.nan
    return {"tokens": len(lps), "nll_mean": nll, "perplexity": metrics.perplexity(lps)}


def compare(sage_lps: Sequence[float], base_lps: Sequence[float]) -> dict[str, Any]:
    s, b = summarize(sage_lps), summarize(base_lps)
    diffs = [abs(x - y) for x, y in zip(sage_lps, base_lps, strict=True)]
    rel = metrics.relative_change(s["perplexity"], b["perplexity"])
    return {
        "perplexity_sage": s["perplexity"],
        "perplexity_baseline": b["perplexity"],
        "ppl_increase_pct": None if rel is None else rel * 100,
        "mean_abs_logprob_diff": sum(diffs) / len(diffs) if diffs else None,
        "max_abs_logprob_diff": max(diffs) if diffs else None,
    }
