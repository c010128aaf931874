"""HTTP client for SGLang's native API: /generate (plain and streaming), server info.

Standard library only (urllib, threads), so the benchmark client adds no dependency and
behaves the same with every SGLang release. The streaming request mirrors SGLang's
`bench_serving` (`async_request_sglang_generate`): `input_ids`, `stream: true`, `ignore_eos`,
fixed `max_new_tokens`, SSE lines `data: {...}` with cumulative `text` and
`meta_info.completion_tokens`, terminated by `data: [DONE]`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ClientError(RuntimeError):
    """A request failed (connection refused, HTTP error, malformed reply)."""


def post_json(base_url: str, path: str, payload: Mapping[str, Any], timeout: float = 600.0) -> Any:
    """POST `payload` as JSON and return the decoded reply; ClientError on any failure."""
    req = urllib.request.Request(
        base_url.rstrip("/") + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise ClientError(f"POST {path} -> HTTP {exc.code}: {_body(exc)}") from exc
    except (ValueError, RecursionError) as exc:
        raise ClientError(f"POST {path}: the reply is not JSON ({exc})") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ClientError(f"POST {path} failed: {getattr(exc, 'reason', exc)}") from exc


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    """`[fn(x) for x in items]`, `workers` at a time, in order, on daemon threads: on Ctrl-C the
    main thread leaves at once (ThreadPoolExecutor would wait for every request in flight,
    up to its timeout, at shutdown and again at interpreter exit)."""
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    next_index = iter(range(len(items)))
    lock = threading.Lock()

    def worker() -> None:
        while not errors:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins keep the main thread responsive to signals
    if errors:
        raise errors[0]
    return results


def one_line(text: str, limit: int = 300) -> str:
    """`text` with whitespace runs collapsed, cut to `limit` characters (error messages)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _body(exc: urllib.error.HTTPError) -> str:
    try:
        return one_line(exc.read().decode(errors="replace")) or "(empty body)"
    except OSError:
        return "(no body)"


def get_json(base_url: str, path: str, timeout: float = 10.0) -> Any:
    """GET and decode JSON; ClientError on any failure."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=timeout) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError, RecursionError) as exc:
        raise ClientError(f"GET {base_url}{path} failed: {exc}") from exc


def server_info(base_url: str) -> dict[str, Any]:
    """/get_server_info (every release since 0.4), or {} when it is not available."""
    try:
        info = get_json(base_url, "/get_server_info")
    except ClientError:
        return {}
    return info if isinstance(info, dict) else {}


def model_info(base_url: str) -> dict[str, Any]:
    """/get_model_info (model_path, tokenizer_path, ...), or {}."""
    try:
        info = get_json(base_url, "/get_model_info")
    except ClientError:
        return {}
    return info if isinstance(info, dict) else {}


def flush_cache(base_url: str) -> bool:
    """Empty the radix cache (so attached servers give honest TTFTs); True when it worked."""
    try:
        post_json(base_url, "/flush_cache", {}, timeout=30)
    except ClientError:
        return False
    return True


def served_backend(info: Mapping[str, Any]) -> str | None:
    """The prefill attention backend a server reports in /get_server_info, if any."""
    return info.get("prefill_attention_backend") or info.get("attention_backend")


def generate(
    base_url: str,
    *,
    input_ids: Sequence[int] | None = None,
    text: str | None = None,
    max_new_tokens: int = 1,
    return_logprob: bool = False,
    logprob_start_len: int | None = None,
    top_logprobs_num: int = 0,
    ignore_eos: bool = True,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Greedy (temperature 0) non-streaming /generate; returns SGLang's reply dict."""
    payload: dict[str, Any] = {
        "sampling_params": {
            "temperature": 0.0,
            "max_new_tokens": max_new_tokens,
            "ignore_eos": ignore_eos,
        },
    }
    if input_ids is not None:
        payload["input_ids"] = list(input_ids)
    else:
        payload["text"] = text
    if return_logprob:
        payload["return_logprob"] = True
        if logprob_start_len is not None:
            payload["logprob_start_len"] = logprob_start_len
        if top_logprobs_num:
            payload["top_logprobs_num"] = top_logprobs_num
    reply = post_json(base_url, "/generate", payload, timeout)
    if isinstance(reply, list) and len(reply) == 1:
        reply = reply[0]  # a batch of one
    if not isinstance(reply, dict):
        raise ClientError(
            f"/generate replied with a JSON {type(reply).__name__}, not an object: "
            f"{one_line(json.dumps(reply), 200)}"
        )
    if not isinstance(reply.get("meta_info"), dict):
        raise ClientError(f"/generate reply without meta_info: {one_line(json.dumps(reply), 200)}")
    return reply


def meta_list(reply: Mapping[str, Any], key: str, hint: str = "") -> list[Any]:
    """`reply["meta_info"][key]` as a list; ClientError naming the key when absent or wrong."""
    value = reply["meta_info"].get(key)
    if not isinstance(value, list):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise ClientError(f"/generate reply: meta_info.{key} is {got}, expected a list{hint}")
    return value


def output_ids(reply: Mapping[str, Any]) -> list[int]:
    """Generated token ids: `output_ids`, or the ids in `output_token_logprobs` (0.4.x)."""
    try:
        if "output_ids" in reply:
            return [int(t) for t in reply["output_ids"]]
        entries = (reply.get("meta_info") or {}).get("output_token_logprobs") or []
        return [int(e[1]) for e in entries]
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise ClientError(f"/generate reply: malformed output ids ({exc})") from None


@dataclass
class StreamResult:
    """One streamed request, timed as SGLang's bench_serving times it (seconds)."""

    input_len: int
    output_len: int = 0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    start: float = 0.0
    success: bool = False
    error: str = ""


def stream_generate(
    base_url: str, input_ids: Sequence[int], output_len: int, timeout: float = 600.0
) -> StreamResult:
    """Streaming greedy /generate of exactly `output_len` tokens (ignore_eos).

    TTFT: time to the first chunk with text. ITL: gap between chunks with new tokens, split
    evenly over the tokens a chunk carries (bench_serving's definition since 0.5). Latency:
    time to the last chunk.
    """
    result = StreamResult(input_len=len(input_ids))
    sampling = {"temperature": 0.0, "max_new_tokens": output_len, "ignore_eos": True}
    payload = {"input_ids": list(input_ids), "sampling_params": sampling, "stream": True}
    req = urllib.request.Request(
        base_url.rstrip("/") + "/generate",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    result.start = start
    recent = start
    last_len = 0
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            for chunk, latency in _stream_chunks(response, start):
                n = int((chunk.get("meta_info") or {}).get("completion_tokens", last_len))
                if n <= last_len and result.ttft:
                    continue
                now = time.perf_counter()
                if not result.ttft:
                    result.ttft = now - start
                else:
                    gap = (now - recent) / (n - last_len)
                    result.itl.extend([gap] * (n - last_len))
                recent = now
                last_len = n
                result.latency = latency
        result.output_len = last_len
        # ignore_eos: a complete request returns exactly output_len tokens; fewer or more
        # would make the throughput of the two backends incomparable
        result.success = last_len == output_len
        if not last_len:
            result.error = "stream ended without tokens"
        elif not result.success:
            result.error = f"the stream returned {last_len} of {output_len} tokens"
    except urllib.error.HTTPError as exc:
        result.error = f"HTTP {exc.code}: {_body(exc)}"
    except (
        urllib.error.URLError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        OverflowError,
        RecursionError,
        ClientError,
    ) as exc:
        result.error = f"{type(exc).__name__}: {one_line(str(exc), 200)}"
    return result


def _stream_chunks(response: Any, start: float) -> Iterator[tuple[dict[str, Any], float]]:
    """The server-sent events of a streaming /generate as (JSON object, seconds since start);
    ClientError for a chunk that is not an object or that carries an error."""
    for raw in response:
        line = raw.strip()
        if not line:
            continue
        data = line[6:] if line.startswith(b"data: ") else line
        latency = time.perf_counter() - start
        if data == b"[DONE]":
            continue
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise ClientError(
                f"stream chunk is not a JSON object: {one_line(data.decode(errors='replace'), 100)}"
            )
        if chunk.get("error"):
            raise ClientError(str(chunk["error"]))
        yield chunk, latency
