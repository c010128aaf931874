"""Offline text and tasks for the tiny trained models (no downloads anywhere).

Accuracy numbers need a model whose attention is sharp and position dependent; a random-init
model attends almost uniformly and hides quantization error. This module supplies everything
the trainer and the benchmarks need, from what is already on the machine:

* `source_files()` / `split_of()`: the Python standard library sources, split train / held-out
  **by file** with a seeded hash of the relative path, so the split is the same on every machine
  whatever files its Python ships (3.11 here, 3.12 on the GPU box).
* `heldout_text()`: the held-out files, concatenated deterministically (perplexity data).
* `train_tokenizer()` / `save_tokenizer()`: a byte-level BPE (`tokenizers`), saved as plain
  `tokenizer.json` + `tokenizer_config.json` that transformers 4.54 - 5.x and SGLang all load.
* `RetrievalTask`: synthetic long-context key-value retrieval (`key 4821 = 739520` lines
  scattered over code, then `query 4821 =`); the model must copy the value from far back.
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
SPLIT_SEED = "sage-heldout-v1"
HELDOUT_PERCENT = 5
FILE_SEP = "\n\n# ---- {name} ----\n\n"
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "idlelib", "lib2to3", "turtledemo"}


def stdlib_dir() -> Path:
    """This interpreter's standard library directory (sources)."""
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relpath: str, seed: str = SPLIT_SEED, heldout_percent: int = HELDOUT_PERCENT) -> str:
    """'heldout' or 'train' for a stdlib-relative path: a seeded hash, machine independent."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{relpath}".encode()).digest()[:8], "big")
    return "heldout" if h % 100 < heldout_percent else "train"


def _order_key(relpath: str, seed: str) -> bytes:
    """A seeded, deterministic file order (not alphabetical, so caps take a spread of files)."""
    return hashlib.sha256(f"{seed}:order:{relpath}".encode()).digest()


def source_files(
    root: Path | None = None, *, include_tests: bool = False, seed: str = SPLIT_SEED
) -> list[tuple[str, Path]]:
    """(relpath, path) of every stdlib *.py file, in seeded order; test packages excluded."""
    root = Path(root) if root is not None else stdlib_dir()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        skip = _SKIP_DIRS if include_tests else _SKIP_DIRS | {"test", "tests"}
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for fn in filenames:
            if fn.endswith(".py"):
                rel = (rel_dir / fn).as_posix()
                out.append((rel, Path(dirpath) / fn))
    out.sort(key=lambda rp: _order_key(rp[0], seed))
    return out


def site_source_files(seed: str = SPLIT_SEED) -> list[tuple[str, Path]]:
    """Extra *training* text: *.py files of installed packages (site-/dist-packages)."""
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    roots |= set(getattr(site, "getsitepackages", list)())
    out: dict[str, Path] = {}
    for r in sorted(roots):
        root = Path(r)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in {"__pycache__", "tests", "test"})
            for fn in filenames:
                if fn.endswith(".py"):
                    p = Path(dirpath) / fn
                    out.setdefault(f"site:{p.relative_to(root).as_posix()}", p)
    return sorted(out.items(), key=lambda rp: _order_key(rp[0], seed))


def read_text(path: Path) -> str:
    """File text, undecodable bytes replaced (a few stdlib files are latin-1)."""
    return path.read_bytes().decode("utf-8", errors="replace")


def split_files(
    files: Iterable[tuple[str, Path]], which: str, seed: str = SPLIT_SEED
) -> list[tuple[str, Path]]:
    """The files of one split ('train' or 'heldout'), order preserved."""
    return [(rel, p) for rel, p in files if split_of(rel, seed) == which]


def content_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def iter_texts(
    files: Iterable[tuple[str, Path]],
    max_bytes: int | None = None,
    with_header: bool = True,
    exclude: set[str] | None = None,
    max_file_bytes: int = 4_000_000,
) -> Iterator[str]:
    """File texts (each after a header line naming the file) until `max_bytes` is reached.

    Files whose `content_hash` is in `exclude` (e.g. vendored copies of held-out stdlib modules)
    and files over `max_file_bytes` (generated tables) are skipped.
    """
    total = 0
    for rel, p in files:
        try:
            if p.stat().st_size > max_file_bytes:
                continue
            t = read_text(p)
        except OSError:
            continue
        if not t.strip() or (exclude and content_hash(t) in exclude):
            continue
        if with_header:
            t = FILE_SEP.format(name=rel) + t
        yield t
        total += len(t.encode())
        if max_bytes is not None and total >= max_bytes:
            return


def heldout_text(
    max_bytes: int | None = 2_000_000, root: Path | None = None, seed: str = SPLIT_SEED
) -> str:
    """Deterministic held-out text: held-out stdlib files in seeded order, cut at `max_bytes`."""
    files = split_files(source_files(root, seed=seed), "heldout", seed)
    text = "".join(iter_texts(files, max_bytes=None))
    if max_bytes is None:
        return text
    return text.encode()[:max_bytes].decode("utf-8", errors="ignore")


def heldout_hashes(root: Path | None = None, seed: str = SPLIT_SEED) -> set[str]:
    """Content hashes of the held-out files (to keep their copies out of the training text)."""
    files = split_files(source_files(root, seed=seed), "heldout", seed)
    return {content_hash(read_text(p)) for _, p in files}


# ---------------------------------------------------------------------------------------------
# tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192):  # -> tokenizers.Tokenizer
    """Byte-level BPE (GPT-2 style pre-tokenizer, no BOS post-processor), trained offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok, out_dir: Path, model_max_length: int) -> dict[str, int]:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json; return special ids.

    Written by hand (not `save_pretrained`) so that every transformers release in the CI matrix
    (4.54 - 5.19) and SGLang read the same files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return special_ids(tok)


def special_ids(tok) -> dict[str, int]:
    """bos/eos/pad/unk ids of a tokenizers.Tokenizer built by `train_tokenizer`."""
    names = {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "pad": "<pad>"}
    return {k: tok.token_to_id(v) for k, v in names.items()}


def load_tokenizer(path: Path):  # -> tokenizers.Tokenizer
    """The raw tokenizers.Tokenizer from a directory or a tokenizer.json file."""
    from tokenizers import Tokenizer

    p = Path(path)
    return Tokenizer.from_file(str(p / "tokenizer.json" if p.is_dir() else p))


def encode_stream(tok, texts: Iterable[str], eos_id: int, batch: int = 64) -> np.ndarray:
    """All texts tokenized into one int32 stream, documents separated by EOS."""
    parts: list[np.ndarray] = []
    buf: list[str] = []

    def flush() -> None:
        for enc in tok.encode_batch(buf, add_special_tokens=False):
            parts.append(np.asarray([*enc.ids, eos_id], dtype=np.int32))
        buf.clear()

    for t in texts:
        buf.append(t)
        if len(buf) >= batch:
            flush()
    if buf:
        flush()
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# synthetic long-context retrieval


@dataclass
class RetrievalSample:
    """One eval prompt: `input_ids` has exactly the requested length and ends with the query."""

    input_ids: list[int]
    answer_ids: list[int]
    key: str
    value: str
    needle_pos: int  # token index where the target `key K = V` line starts
    n_pairs: int
    meta: dict = field(default_factory=dict)


class RetrievalTask:
    """Key-value lines scattered over filler text, queried later; answers are copied values.

    Token-level construction (each piece is a whole pre-token, so the ids equal those of the
    text tokenized in one go except possibly at the filler/segment seams): a pair is
    `\\nkey K = V\\n`, a query `\\nquery K =` followed by the answer ` V\\n`. Keys are unique
    within a sequence; keys have 4 digits, values 6.
    """

    def __init__(self, tok, filler: np.ndarray, seed: int = 0):
        self.tok = tok
        self.filler = np.asarray(filler, dtype=np.int32)
        if len(self.filler) < 64:
            raise ValueError("filler token stream too short")
        self.rng = np.random.default_rng(seed)
        self._cache: dict[str, list[int]] = {}

    def _enc(self, s: str) -> list[int]:
        ids = self._cache.get(s)
        if ids is None:
            ids = self.tok.encode(s, add_special_tokens=False).ids
            if len(self._cache) < 200_000:
                self._cache[s] = ids
        return ids

    def pair_ids(self, key: str, value: str) -> list[int]:
        e = self._enc
        return e("\nkey") + e(" " + key) + e(" =") + e(" " + value) + e("\n")

    def query_ids(self, key: str) -> list[int]:
        e = self._enc
        return e("\nquery") + e(" " + key) + e(" =")

    def answer_ids(self, value: str) -> list[int]:
        return self._enc(" " + value)

    def _keys_values(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        keys = rng.choice(9000, size=n, replace=False) + 1000
        values = rng.integers(100000, 1000000, size=n)
        return [str(k) for k in keys], [str(v) for v in values]

    def _filler(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` contiguous filler tokens from a random offset (wrapping around)."""
        if n <= 0:
            return np.zeros(0, dtype=np.int32)
        f = self.filler
        start = int(rng.integers(0, len(f)))
        if start + n <= len(f):
            return f[start : start + n]
        reps = (start + n) // len(f) + 1
        return np.tile(f, reps)[start : start + n]

    @staticmethod
    def _assemble(
        filler: np.ndarray, inserts: list[tuple[int, int, list[int]]]
    ) -> tuple[np.ndarray, list[int]]:
        """Splice segments into filler at filler offsets; returns ids and each segment's start."""
        order = sorted(range(len(inserts)), key=lambda i: (inserts[i][0], inserts[i][1]))
        pieces: list[np.ndarray] = []
        starts = [0] * len(inserts)
        prev, pos = 0, 0
        for i in order:
            off, _, seg = inserts[i]
            pieces.append(filler[prev:off])
            pos += off - prev
            starts[i] = pos
            pieces.append(np.asarray(seg, dtype=np.int32))
            pos += len(seg)
            prev = off
        pieces.append(filler[prev:])
        return np.concatenate(pieces), starts

    def sample(
        self,
        length: int,
        n_pairs: int | None = None,
        depth: tuple[float, float] = (0.05, 0.5),
        rng: np.random.Generator | None = None,
    ) -> RetrievalSample:
        """An eval prompt of exactly `length` tokens ending in a query for one pair.

        The queried pair starts at a fraction `depth` of the prompt (far back); the other
        `n_pairs - 1` pairs are distractors at uniform positions.
        """
        rng = rng or self.rng
        n_pairs = n_pairs or int(np.clip(length // 512, 4, 64))
        keys, values = self._keys_values(n_pairs, rng)
        pairs = [self.pair_ids(k, v) for k, v in zip(keys, values, strict=True)]
        query = self.query_ids(keys[0])
        n_fill = length - sum(map(len, pairs)) - len(query)
        if n_fill < 8:
            raise ValueError(f"length {length} too short for {n_pairs} pairs")
        filler = self._filler(n_fill, rng)
        lo, hi = (int(d * n_fill) for d in depth)
        offs = [int(rng.integers(lo, max(hi, lo + 1)))]
        offs += [int(x) for x in rng.integers(0, n_fill, size=n_pairs - 1)]
        inserts = [(o, 0, p) for o, p in zip(offs, pairs, strict=True)]
        inserts.append((n_fill, 1, query))
        ids, starts = self._assemble(filler, inserts)
        assert len(ids) == length
        return RetrievalSample(
            input_ids=ids.tolist(),
            answer_ids=self.answer_ids(values[0]),
            key=keys[0],
            value=values[0],
            needle_pos=starts[0],
            n_pairs=n_pairs,
            meta={"depth": starts[0] / length},
        )

    def train_sequence(
        self,
        length: int,
        rng: np.random.Generator | None = None,
        p_task: float = 0.75,
        pair_every: int = 256,
        query_frac: float = 0.5,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A training sequence of `length` tokens and a bool mask of answer-token positions.

        With probability `p_task` the sequence carries about one pair per `pair_every` tokens
        (2 to 48 pairs), and queries for a `query_frac` share of them (at least one), each
        placed after its pair (most near the end).
        """
        rng = rng or self.rng
        mask = np.zeros(length, dtype=bool)
        if rng.random() >= p_task or length < 128:
            return self._filler(length, rng).copy(), mask
        n_pairs = int(np.clip(length // max(1, pair_every), 2, 48))
        n_q = int(np.clip(int(n_pairs * query_frac), 1, n_pairs))
        keys, values = self._keys_values(n_pairs, rng)
        pairs = [self.pair_ids(k, v) for k, v in zip(keys, values, strict=True)]
        qs = [
            self.query_ids(k) + self.answer_ids(v) + self._enc("\n")
            for k, v in zip(keys, values, strict=True)
        ]
        qlen = [len(self.query_ids(k)) for k in keys]
        alen = [len(self.answer_ids(v)) for v in values]
        n_fill = length - sum(map(len, pairs)) - sum(len(qs[i]) for i in range(n_q))
        if n_fill < 16:
            return self._filler(length, rng).copy(), mask
        filler = self._filler(n_fill, rng)
        pair_off = rng.integers(0, int(0.8 * n_fill) + 1, size=n_pairs)
        inserts = [(int(o), 0, p) for o, p in zip(pair_off, pairs, strict=True)]
        q_off = []
        for i in range(n_q):
            lo = int(pair_off[i]) + 1
            # 2/3 of the queries in the last 15 %, the rest anywhere after their pair
            lo = max(lo, int(0.85 * n_fill)) if rng.random() < 0.67 else lo
            q_off.append(int(rng.integers(min(lo, n_fill), n_fill + 1)))
            inserts.append((q_off[-1], 1, qs[i]))
        ids, starts = self._assemble(filler, inserts)
        for i in range(n_q):
            s = starts[n_pairs + i] + qlen[i]
            mask[s : s + alen[i]] = True
        return ids, mask
