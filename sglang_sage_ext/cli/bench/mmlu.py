"""`bench mmlu`: 5-shot MMLU exactly as SGLang's benchmark/mmlu/bench_sglang.py asks it.

Prompt: "The following are multiple choice questions (with answers) about {subject}.\\n\\n",
then `k` dev examples ("question\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: X\\n\\n"), k = 5
lowered until the few-shot part is at most 1536 tokens (tiktoken cl100k_base as SGLang, or
len/4 when tiktoken or its data is unavailable offline), then the test question ending in
"Answer:". Greedy, max_new_tokens 1; the prediction is the first character of the stripped
output, compared with the label.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sglang_sage_ext.cli.bench import client

CHOICES = ("A", "B", "C", "D")
MAX_FEWSHOT_TOKENS = 1536
BUILTIN_PREFIX = "builtin:"
HF_PREFIX = "hf:"
#: Gates this command reports (see thresholds.GATES).
GATES = ("mmlu_drop",)


class DatasetError(ValueError):
    """The dataset is missing or not in the MMLU layout; the message says what to fix."""


@dataclass(frozen=True)
class Question:
    subject: str
    question: str
    options: tuple[str, str, str, str]
    answer: str  # "A".."D"


@dataclass
class Subject:
    name: str
    dev: list[Question]
    test: list[Question]


LAYOUT_HELP = (
    "expected the standard MMLU CSV layout: <dir>/dev/<subject>_dev.csv and "
    "<dir>/test/<subject>_test.csv, no header, columns question,A,B,C,D,answer (answer in A-D)"
)


def builtin_dir(name: str) -> Path:
    """Path of a dataset shipped in the wheel (sglang_sage_ext/bench/data/<name>)."""
    root = Path(str(resources.files("sglang_sage_ext.cli.bench"))) / "data" / name
    if not root.is_dir():
        shipped = sorted(
            p.name for p in root.parent.iterdir() if p.is_dir() and not p.name.startswith("_")
        )
        raise DatasetError(f"no built-in dataset {name!r}; shipped: {', '.join(shipped)}")
    return root


def _read_csv(path: Path, subject: str) -> list[Question]:
    """Questions of one MMLU CSV; DatasetError (file and line) for anything unreadable."""
    out: list[Question] = []
    reader: Any = None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            for row in reader:
                if row:
                    out.append(_question(path, subject, reader.line_num, row))
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save the CSV as UTF-8"
        ) from None
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 0
        raise DatasetError(
            f"{path}:{line}: not a readable CSV ({exc}); MMLU rows are short "
            "question,A,B,C,D,answer lines: is this the right file?"
        ) from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc.strerror or exc})") from None
    return out


def _question(path: Path, subject: str, lineno: int, row: list[str]) -> Question:
    if len(row) != 6 or row[5].strip() not in CHOICES:
        raise DatasetError(
            f"{path}:{lineno}: expected 6 columns question,A,B,C,D,answer with the "
            f"answer in A-D, got {len(row)} columns"
            + (f" and answer {row[-1][:20]!r}" if row else "")
        )
    return Question(subject, row[0], (row[1], row[2], row[3], row[4]), row[5].strip())


def _unknown_subjects(unknown: Sequence[str], found: Sequence[str]) -> str:
    return f"unknown subject(s) {', '.join(unknown)}; available: {', '.join(found)}"


def load_local(data_dir: str | Path, subjects: Sequence[str] = ()) -> list[Subject]:
    """Read a directory in the MMLU CSV layout (subjects sorted by name, as SGLang)."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory; {LAYOUT_HELP}")
    dev_dir, test_dir = root / "dev", root / "test"
    if not dev_dir.is_dir() or not test_dir.is_dir():
        raise DatasetError(f"{root} has no dev/ and test/ folders; {LAYOUT_HELP}")
    found = sorted(p.name[: -len("_test.csv")] for p in test_dir.glob("*_test.csv"))
    if not found:
        raise DatasetError(f"{test_dir} has no *_test.csv files; {LAYOUT_HELP}")
    wanted = list(subjects) or found
    unknown = [s for s in wanted if s not in found]
    if unknown:
        raise DatasetError(
            f"unknown subject(s) {', '.join(unknown)}; available: {', '.join(found)}"
        )
    out = []
    for name in wanted:
        dev_path = dev_dir / f"{name}_dev.csv"
        if not dev_path.exists():
            raise DatasetError(f"{dev_path} is missing (few-shot examples); {LAYOUT_HELP}")
        out.append(
            Subject(name, _read_csv(dev_path, name), _read_csv(test_dir / f"{name}_test.csv", name))
        )
    return out


def load_hf(dataset: str = "cais/mmlu", subjects: Sequence[str] = ()) -> list[Subject]:
    """Load MMLU from the Hugging Face Hub (`datasets`, imported only here)."""
    try:
        import datasets
    except ImportError:
        raise DatasetError(
            "loading from the Hub needs the `datasets` package (pip install datasets); "
            "or pass --data-dir DIR with the MMLU CSV files"
        ) from None
    try:
        data = datasets.load_dataset(dataset, "all")
    except Exception as exc:
        raise DatasetError(
            f"cannot load {dataset!r} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{str(exc)[:300]}); offline, pass --data-dir DIR with the MMLU CSV files"
        ) from None
    by_subject: dict[str, Subject] = {}
    for split, attr in (("dev", "dev"), ("test", "test")):
        for row in data[split]:
            name = row["subject"]
            subj = by_subject.setdefault(name, Subject(name, [], []))
            opts = tuple(row["choices"])
            getattr(subj, attr).append(
                Question(name, row["question"], opts, CHOICES[row["answer"]])
            )
    found = sorted(by_subject)
    unknown = [s for s in subjects if s not in by_subject]
    if unknown:
        raise DatasetError(
            f"unknown subject(s) {', '.join(unknown)}; available: {', '.join(found)}"
        )
    return [by_subject[s] for s in (list(subjects) or found)]


def load(source: str, subjects: Sequence[str] = ()) -> list[Subject]:
    """`builtin:NAME`, `hf:DATASET` or a local directory."""
    if source.startswith(BUILTIN_PREFIX):
        return load_local(builtin_dir(source[len(BUILTIN_PREFIX) :]), subjects)
    if source.startswith(HF_PREFIX):
        return load_hf(source[len(HF_PREFIX) :] or "cais/mmlu", subjects)
    return load_local(source, subjects)


def check_fewshot(subjects: Sequence[Subject], ntrain: int) -> list[str]:
    """Notes for subjects with fewer than `ntrain` dev examples; DatasetError for one with
    none, which would silently run 0-shot (0-shot is `--ntrain 0`, said so explicitly)."""
    if ntrain <= 0:
        return []
    empty = [s.name for s in subjects if not s.dev]
    if empty:
        raise DatasetError(
            f"no few-shot examples for {', '.join(empty)} (empty dev CSV or split), but "
            f"--ntrain {ntrain} asks for {ntrain}; add dev questions "
            "(<dir>/dev/<subject>_dev.csv), or pass --ntrain 0 to run 0-shot"
        )
    return [
        f"{s.name} has {len(s.dev)} few-shot examples, fewer than --ntrain {ntrain}: its "
        f"prompts are {len(s.dev)}-shot"
        for s in subjects
        if len(s.dev) < ntrain
    ]


def format_subject(subject: str) -> str:
    """'high_school_biology' -> ' high school biology' (leading space, as SGLang)."""
    return "".join(" " + part for part in subject.split("_"))


def format_example(q: Question, include_answer: bool = True) -> str:
    prompt = q.question
    for letter, option in zip(CHOICES, q.options, strict=True):
        prompt += f"\n{letter}. {option}"
    prompt += "\nAnswer:"
    if include_answer:
        prompt += f" {q.answer}\n\n"
    return prompt


def gen_prompt(dev: Sequence[Question], subject: str, k: int = -1) -> str:
    prompt = (
        "The following are multiple choice questions (with answers) about"
        f"{format_subject(subject)}.\n\n"
    )
    for q in dev[: len(dev) if k == -1 else k]:
        prompt += format_example(q)
    return prompt


@functools.lru_cache(maxsize=1)
def token_counter() -> tuple[str, Callable[[str], int]]:
    """SGLang's counter (tiktoken cl100k_base) when it loads, else a len/4 estimate."""
    try:
        import tiktoken

        enc = tiktoken.get_encoding("cl100k_base")
        return "tiktoken cl100k_base", lambda text: len(enc.encode(text))
    except Exception:
        return "len(text)/4 (tiktoken unavailable)", lambda text: len(text) // 4


def fewshot_prefix(subject: Subject, ntrain: int = 5, max_tokens: int = MAX_FEWSHOT_TOKENS) -> str:
    """The few-shot prefix, trimmed to `max_tokens` as bench_sglang.py does."""
    _, count = token_counter()
    k = ntrain
    prefix = gen_prompt(subject.dev, subject.name, k)
    while k > 0 and count(prefix) > max_tokens:
        k -= 1
        prefix = gen_prompt(subject.dev, subject.name, k)
    return prefix


def select_questions(subjects: Sequence[Subject], num_questions: int | None) -> list[Question]:
    """All test questions, or the first `num_questions` taken round-robin over subjects."""
    if num_questions is None:
        return [q for s in subjects for q in s.test]
    picked: list[Question] = []
    index = 0
    while len(picked) < num_questions:
        row = [s.test[index] for s in subjects if index < len(s.test)]
        if not row:
            break
        picked.extend(row[: num_questions - len(picked)])
        index += 1
    return picked


def build_prompts(
    subjects: Sequence[Subject], questions: Sequence[Question], ntrain: int = 5
) -> list[str]:
    prefixes = {s.name: fewshot_prefix(s, ntrain) for s in subjects}
    return [prefixes[q.subject] + format_example(q, include_answer=False) for q in questions]


def parse_prediction(text: str) -> str:
    """First character of the stripped output ('' when empty), as bench_sglang.py."""
    text = text.strip()
    return text[0] if text else ""


def score(questions: Sequence[Question], predictions: Sequence[str]) -> dict[str, Any]:
    """Accuracy per subject and overall (over all questions, as SGLang's weighted acc)."""
    per: dict[str, list[int]] = {}
    for q, pred in zip(questions, predictions, strict=True):
        per.setdefault(q.subject, []).append(int(pred == q.answer))
    correct = sum(sum(v) for v in per.values())
    total = sum(len(v) for v in per.values())
    return {
        "accuracy": correct / total if total else None,
        "correct": correct,
        "total": total,
        "subjects": {
            name: {"accuracy": sum(v) / len(v), "correct": sum(v), "total": len(v)}
            for name, v in sorted(per.items())
        },
    }


def run(
    base_url: str, prompts: Sequence[str], parallel: int = 32, advance: Any = None
) -> list[str]:
    """Greedy one-token answers for every prompt; returns the raw generated texts."""

    def one(prompt: str) -> str:
        reply = client.generate(base_url, text=prompt, max_new_tokens=1, ignore_eos=False)
        text = reply.get("text")
        if not isinstance(text, str):
            got = "missing" if text is None else f"a {type(text).__name__}"
            raise client.ClientError(f"/generate reply: text is {got}, expected a string")
        if advance is not None:
            advance()
        return text

    return client.parallel_map(one, prompts, parallel)


def compare(
    sage: dict[str, Any], baseline: dict[str, Any], sage_preds: list, base_preds: list
) -> dict[str, Any]:
    """Accuracy deltas (sage - baseline) and how often the two picked the same letter."""
    same = sum(a == b for a, b in zip(sage_preds, base_preds, strict=True))
    subjects = {}
    for name, s in sage["subjects"].items():
        b = baseline["subjects"].get(name)
        if b:
            subjects[name] = {
                "sage": s["accuracy"],
                "baseline": b["accuracy"],
                "delta": s["accuracy"] - b["accuracy"],
            }
    delta = (
        None
        if sage["accuracy"] is None or baseline["accuracy"] is None
        else sage["accuracy"] - baseline["accuracy"]
    )
    return {
        "accuracy_delta": delta,
        "answer_agreement": same / len(sage_preds) if sage_preds else None,
        "subjects": subjects,
    }
