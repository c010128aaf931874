"""`sglang-sage bench`: the same workload on sage_attn and on a baseline backend, side by side.

The subcommands live in cli_serving (throughput, mmlu), cli_accuracy (logits, perplexity) and
cli_offline (drift, report); what they share (options, the guard, exit codes) in cli_common.

Exit codes: 0 done (and every --fail-if gate passed); 1 error (server did not start or died,
failed or malformed server reply, bad dataset, ...: one message, no traceback); 2 usage error
(bad option, --server-args or -o); 3 a --fail-if gate was exceeded or has no value; 4 the
sage_attn server never ran Sage (unless --allow-no-sage); 5 the run finished but its result
file could not be written (the summary is printed anyway); 128 + N stopped by signal N (130
Ctrl-C, 143 SIGTERM, 129 SIGHUP; launched servers are stopped first).
"""

from __future__ import annotations

import click

from sglang_sage_ext.cli.bench import cli_accuracy, cli_offline, cli_serving, thresholds
from sglang_sage_ext.cli.bench.cli_common import EXIT_INTERRUPTED

__all__ = ["EXIT_INTERRUPTED", "GROUP_HELP", "bench_group"]

GROUP_HELP = """Compare sage_attn with a baseline backend on real SGLang servers.

Each command either launches both servers from --model-path (127.0.0.1, one after the other,
stopped on exit, Ctrl-C, SIGTERM, SIGHUP or failure, and killed by the kernel if bench itself
is killed; logs in OUTPUT_DIR/logs) or attaches to running ones (--sage-url, --baseline-url),
and writes OUTPUT_DIR/<command>.json (strict JSON: a NaN or infinite value is null, and the
top-level "non_finite" object maps its JSON pointer to "NaN", "Infinity" or "-Infinity");
`report` turns those into report.md, report.json and plots.

\b
Exit codes: 0 ok, 1 error, 2 usage error, 3 a --fail-if gate exceeded (or without a value),
4 the sage_attn server never ran Sage (--allow-no-sage accepts it), 5 the results could not be
saved (summary printed; 3 and 4 win), 128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM,
129 SIGHUP).
Gates (--fail-if GATE=LIMIT, larger is worse):
""" + "\n".join(f"  {name}: {text}" for name, text in thresholds.GATES.items())


@click.group("bench", help=GROUP_HELP, context_settings={"help_option_names": ["-h", "--help"]})
def bench_group() -> None:
    pass


for _command in (
    cli_serving.throughput,
    cli_serving.mmlu,
    cli_accuracy.logits,
    cli_accuracy.perplexity,
    cli_offline.drift,
    cli_offline.report,
):
    bench_group.add_command(_command)
