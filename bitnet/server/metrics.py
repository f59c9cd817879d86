"""Server counters and their Prometheus text exposition (format 0.0.4).

All updates happen on the event loop thread (requests end there, and worker threads report through
`call_soon_threadsafe`), so plain integers suffice.
"""
from __future__ import annotations

import time
from collections import Counter, deque

from bitnet.generation import Timings

RATE_WINDOW_S = 60.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests: Counter[tuple[str, int]] = Counter()   # (endpoint, status) -> count
        self.request_seconds = 0.0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.prefill_tokens = 0
        self.prefill_seconds = 0.0
        self.decode_tokens = 0
        self.decode_seconds = 0.0
        self.generations = 0
        self._recent: deque[tuple[float, int]] = deque()   # (time, completion tokens) of recent generations

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, status)] += 1
        self.request_seconds += seconds

    def record_generation(self, prompt_tokens: int, completion_tokens: int, timings: Timings) -> None:
        self.generations += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.prefill_tokens += timings.prefill_tokens
        self.prefill_seconds += timings.prefill_s
        self.decode_tokens += timings.decode_tokens
        self.decode_seconds += timings.decode_s
        now = time.monotonic()
        self._recent.append((now, completion_tokens))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()

    def tokens_per_second(self) -> float:
        """Completion tokens per second over the last minute, all slots together (the server's throughput)."""
        now = time.monotonic()
        self._trim(now)
        window = min(RATE_WINDOW_S, now - self.started)
        return sum(n for _, n in self._recent) / window if window > 0 else 0.0

    def render(self, *, slots_total: int, slots_busy: int, queue_depth: int, queue_size: int, batch_size: int = 0,
               batch_steps: int = 0, batch_sequence_steps: int = 0) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                out.append(f"{name}{labels} {_number(value)}")

        n_requests = sum(self.requests.values())
        metric("bitnet_requests_total", "counter", "HTTP requests answered, by endpoint and status code.",
               [(f'{{endpoint="{_escape(ep)}",status="{status}"}}', n)
                for (ep, status), n in sorted(self.requests.items())])
        out.append("# HELP bitnet_request_duration_seconds Time from request to the end of the response.")
        out.append("# TYPE bitnet_request_duration_seconds summary")
        out.append(f"bitnet_request_duration_seconds_sum {_number(self.request_seconds)}")
        out.append(f"bitnet_request_duration_seconds_count {n_requests}")
        metric("bitnet_generations_total", "counter", "Generations run (finished, stopped or cancelled).",
               [("", self.generations)])
        metric("bitnet_prompt_tokens_total", "counter", "Prompt tokens of all generations.",
               [("", self.prompt_tokens)])
        metric("bitnet_completion_tokens_total", "counter", "Tokens generated.", [("", self.completion_tokens)])
        metric("bitnet_prefill_tokens_total", "counter",
               "Prompt tokens evaluated (the rest came from a slot's KV cache).", [("", self.prefill_tokens)])
        metric("bitnet_prefill_seconds_total", "counter", "Time spent evaluating prompts.",
               [("", self.prefill_seconds)])
        metric("bitnet_decode_tokens_total", "counter", "Tokens decoded one at a time.", [("", self.decode_tokens)])
        metric("bitnet_decode_seconds_total", "counter", "Time spent decoding.", [("", self.decode_seconds)])
        metric("bitnet_tokens_per_second", "gauge",
               f"Completion tokens per second over the last {RATE_WINDOW_S:g} s, all slots together.",
               [("", self.tokens_per_second())])
        per_seq = self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0
        metric("bitnet_decode_tokens_per_second", "gauge",
               "Decode speed of one sequence, averaged since start.", [("", per_seq)])
        metric("bitnet_batch_size", "gauge", "Sequences in the running batch now.", [("", batch_size)])
        metric("bitnet_batch_steps_total", "counter", "Forward steps of the batch.", [("", batch_steps)])
        metric("bitnet_batch_sequence_steps_total", "counter",
               "Sum over steps of the sequences in each (divided by the steps: the mean batch size).",
               [("", batch_sequence_steps)])
        metric("bitnet_queue_depth", "gauge", "Requests waiting for a slot.", [("", queue_depth)])
        metric("bitnet_queue_size", "gauge", "Most requests that may wait for a slot.", [("", queue_size)])
        metric("bitnet_slots_busy", "gauge", "Slots generating now.", [("", slots_busy)])
        metric("bitnet_slots_total", "gauge", "Slots (concurrent sequences, each with its own KV cache).",
               [("", slots_total)])
        metric("bitnet_uptime_seconds", "gauge", "Seconds since the server started.",
               [("", time.monotonic() - self.started)])
        return "\n".join(out) + "\n"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(round(float(value), 6))


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
