"""Every SGLANG_SAGE_* environment variable, its allowed values, and one way to parse them.

Why one module: the runtime (fallback, kernels, decode choice, stats) and `sglang-sage doctor`
must agree on what a value means; when each parsed its own variable, `doctor` called
SGLANG_SAGE_FORCE_FALLBACK=0 "forced off" and showed a mistyped decode backend as ok. The
runtime stays tolerant (an invalid value never stops a server: the default is used and one
warning line says so), while `doctor` reports the same problems as FAIL lines.

A leaf module: it imports only `os`, so anything (the bootstrap included) may import it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's constant without importing typing (interpreter start cost)
if TYPE_CHECKING:
    from collections.abc import Callable

PREFIX = "SGLANG_SAGE_"
TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("0", "false", "no", "off")

BOOL, CHOICE, INT, DIR, TEXT = "bool", "choice", "int", "dir", "text"


class Var:
    """One variable: its kind, default and allowed values."""

    __slots__ = ("aliases", "choices", "default", "kind", "meaning", "minimum", "name", "scope")

    def __init__(
        self,
        name: str,
        kind: str,
        default: object,
        meaning: str,
        *,
        choices: tuple[str, ...] = (),
        aliases: dict[str, str] | None = None,
        minimum: int = 0,
        scope: str = "package",
    ) -> None:
        self.name = name
        self.kind = kind
        self.default = default
        self.meaning = meaning
        self.choices = choices
        self.aliases = aliases or {}
        self.minimum = minimum
        self.scope = scope

    def allowed(self) -> str:
        """The allowed values, in words (for warnings, `doctor` and the README)."""
        if self.kind == BOOL:
            return f"{'|'.join(TRUE_VALUES)} (on) or {'|'.join(FALSE_VALUES)} (off)"
        if self.kind == CHOICE:
            text = "|".join(self.choices)
            if self.aliases:
                text += " (also " + ", ".join(f"{a}={v}" for a, v in self.aliases.items()) + ")"
            return text
        if self.kind == INT:
            return f"an integer >= {self.minimum}"
        if self.kind == DIR:
            return "an existing, writable directory"
        return "any text"

    def parse(self, raw: str | None) -> tuple[object, str | None]:
        """(value to use, problem or None); unset or empty means the default, silently."""
        if raw is None or not raw.strip():
            return self.default, None
        text = raw.strip()
        if self.kind == BOOL:
            low = text.lower()
            if low in TRUE_VALUES or low in FALSE_VALUES:
                return low in TRUE_VALUES, None
            return self.default, "not a boolean"
        if self.kind == CHOICE:
            low = text.lower()
            low = self.aliases.get(low, low)
            if low in self.choices:
                return low, None
            return self.default, "unknown value"
        if self.kind == INT:
            try:
                number = int(text)
            except ValueError:
                return self.default, "not an integer"
            if number < self.minimum:
                return self.default, f"below the minimum {self.minimum}"
            return number, None
        if self.kind == DIR:
            if not os.path.isdir(text):
                return self.default, "not an existing directory"
            if not os.access(text, os.W_OK | os.X_OK):
                return self.default, "directory not writable by this user"
        return text, None


_TEST_SUITE = "test suite (tests, bench/gpu scripts); the package does not read it"

VARIABLES: tuple[Var, ...] = (
    Var("SGLANG_SAGE_EXT_DISABLE", BOOL, False, "switch the extension off in this process tree"),
    Var("SGLANG_SAGE_EXT_DEBUG", BOOL, False, "print bootstrap failures on stderr"),
    Var(
        "SGLANG_SAGE_FORCE_FALLBACK", BOOL, False, "run every extend batch on the exact native path"
    ),
    Var(
        "SGLANG_SAGE_DECODE_BACKEND",
        CHOICE,
        "auto",
        "decode backend under --attention-backend sage_attn",
        choices=("auto", "fa3", "flashinfer", "triton"),
        aliases={"sage_attn": "triton"},
    ),
    Var(
        "SGLANG_SAGE_PAGED_EXTEND",
        CHOICE,
        "all",
        "which Sage batches the paged kernel takes",
        choices=("all", "prefix", "off"),
        aliases={"0": "off", "false": "off", "no": "off"},
    ),
    Var(
        "SGLANG_SAGE_EXTEND_PV",
        CHOICE,
        "fp16",
        "P·V precision of the paged kernel",
        choices=("fp16", "fp8", "auto"),
    ),
    Var(
        "SGLANG_SAGE_KERNEL",
        CHOICE,
        "auto",
        "Sage extend kernel: auto (the Hopper CUDA kernel on sm90 where it builds), cuda, triton",
        choices=("auto", "cuda", "triton"),
    ),
    Var(
        "SGLANG_SAGE_Q_SMOOTH",
        CHOICE,
        "auto",
        "Q smoothing in the paged kernels (auto: on with FP16 P·V in the Triton kernel; off with "
        "FP8 P·V and in the Hopper CUDA kernel)",
        choices=("auto", "on", "off"),
        aliases={"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"},
    ),
    Var("SGLANG_SAGE_MIN_TOKENS", INT, 16, "smallest batch sent to Sage", minimum=1),
    Var("SGLANG_SAGE_STATS_DIR", DIR, None, "where each process writes its Sage/fallback counts"),
    Var(
        "SGLANG_SAGE_COST_MODEL",
        CHOICE,
        "auto",
        "auto: Sage only where the measured cost model says it pays; off: every eligible batch",
        choices=("auto", "off"),
        aliases={"0": "off", "false": "off", "no": "off"},
    ),
    Var("SGLANG_SAGE_CPU_INTERPRET", BOOL, False, "paged kernel under TRITON_INTERPRET on CPU"),
    Var(
        "SGLANG_SAGE_CPU_SHIMS",
        CHOICE,
        "0",
        "CPU-CI shims in every interpreter (tests only)",
        choices=("0", "1"),
    ),
    Var(
        "SGLANG_SAGE_TEST_SET",
        CHOICE,
        "all",
        "which slow CPU tests run: all, or ci (the tox matrix's share, tests/_selection.py)",
        choices=("all", "ci"),
        scope=_TEST_SUITE,
    ),
    Var("SGLANG_SAGE_TEST_MODEL", TEXT, None, "model of the GPU server tests", scope=_TEST_SUITE),
    Var("SGLANG_SAGE_RESULTS_DIR", TEXT, None, "GPU test results", scope=_TEST_SUITE),
    Var("SGLANG_SAGE_SERVER_LOG_DIR", TEXT, None, "GPU server test logs", scope=_TEST_SUITE),
    Var("SGLANG_SAGE_GPU_TP", INT, 1, "--tp of the GPU server tests", minimum=1, scope=_TEST_SUITE),
    Var("SGLANG_SAGE_GPU_START_TIMEOUT", TEXT, None, "GPU server start timeout", scope=_TEST_SUITE),
    Var("SGLANG_SAGE_GPU_PARALLEL_START", TEXT, None, "GPU servers start", scope=_TEST_SUITE),
)

BY_NAME: dict[str, Var] = {var.name: var for var in VARIABLES}

_warned: set[tuple[str, str]] = set()


def warning_line(name: str, raw: str, problem: str, used: object) -> str:
    """The one line the runtime logs for an invalid value (names the fix too)."""
    action = "ignoring it" if used is None else f"using {used!r}"
    return (
        f"sglang-sage-ext: {name}={raw!r} is invalid ({problem}); allowed: "
        f"{BY_NAME[name].allowed()}; {action}. `sglang-sage doctor` checks every {PREFIX}* "
        "variable."
    )


def value(
    name: str, warn: Callable[[str], object] | None = None, environ: dict[str, str] | None = None
) -> object:
    """The value of a declared variable; an invalid one yields the default.

    `warn` (e.g. `logger.warning`) gets one line per variable and bad value per process, so a
    server that runs with a typo says so once instead of silently using the default.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(name)
    result, problem = BY_NAME[name].parse(raw)
    if problem and warn is not None and (name, str(raw)) not in _warned:
        _warned.add((name, str(raw)))
        warn(warning_line(name, str(raw), problem, result))
    return result


def flag(
    name: str, warn: Callable[[str], object] | None = None, environ: dict[str, str] | None = None
) -> bool:
    """A boolean variable (see `value`)."""
    return bool(value(name, warn, environ))


def set_names(environ: dict[str, str] | None = None) -> list[str]:
    """Every SGLANG_SAGE_* name set in `environ`, sorted."""
    environ = os.environ if environ is None else environ
    return sorted(name for name in environ if name.startswith(PREFIX))


def validate(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Problems of the SGLANG_SAGE_* variables that are set: {name: what is wrong, allowed}."""
    environ = os.environ if environ is None else environ
    problems: dict[str, str] = {}
    for name in set_names(environ):
        var = BY_NAME.get(name)
        if var is None:
            problems[name] = "unknown variable (a typo?); known: " + ", ".join(BY_NAME)
            continue
        used, problem = var.parse(environ[name])
        if problem:
            instead = "ignores it" if used is None else f"uses {used!r} instead"
            problems[name] = (
                f"{environ[name]!r}: {problem}; allowed: {var.allowed()} (the runtime {instead})"
            )
    return problems
