"""A Jinja environment for chat templates that come from model files: sandboxed and bounded.

Jinja's immutable sandbox keeps a template away from Python internals, but not from spending the machine: a
template is data, and `{% for i in range(99999) %}{% for j in range(99999) %}...`, `{{ 'x' * 10**10 }}`, a
recursive macro or a doubling namespace value would hang or exhaust memory. Every render here has a budget:

- steps (iterations of `range()` and of `messages`, however nested, and calls: a macro that calls itself twice
  loops without any loop) and a wall-clock deadline, checked every few steps and at each piece of output;
- sizes: an operator, function or filter argument that would build a value over the output limit is refused
  before it is built (`*`, `**`, `%`-format widths, integer arguments such as `center(10**9)`), and the output
  itself is cut off at the limit;
- recursion depth (a self-calling macro), and the nesting depth of the template itself: Jinja's compiler
  spends time growing with the cube of it (250 nested `+` take 3 s to compile), before any render budget runs.
Going over any of them raises `TokenizerError` naming the limit.
"""
from __future__ import annotations

import contextvars
import functools
import re
import time
from typing import Any

from jinja2.runtime import Namespace
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from bitnet.errors import TokenizerError

MAX_OUTPUT_CHARS = 4 * 1024 * 1024     # a rendered prompt far longer than any context window
MAX_LOOP_STEPS = 1_000_000
MAX_NESTING = 64                       # real chat templates nest 5-20 deep; 64 compiles in milliseconds
# Far above any real template's render time (milliseconds), even on a loaded server, and below the 2 s a fuzzer
# counts as a hang.
MAX_SECONDS = 1.0
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(\d{7,}|\*)|%[-#0 +]*\d*\.(\d{7,}|\*)")


class RenderBudget:
    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_LOOP_STEPS:
            raise TokenizerError(f"chat template cut off: more than {MAX_LOOP_STEPS:,} loop steps or calls")
        if self.steps % 256 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TokenizerError(f"chat template cut off: rendering took more than {MAX_SECONDS:g} s")


_budget: contextvars.ContextVar[RenderBudget] = contextvars.ContextVar("chat_template_budget")


def _current() -> RenderBudget:
    budget = _budget.get(None)
    if budget is None:                  # constant folding at compile time: no render is running yet
        raise SecurityError("evaluated at render time only")
    return budget


def _counted(iterable):
    budget = _current()
    for item in iterable:
        budget.step()
        yield item


class CountedList(list):
    """`messages` as the template sees it: iterating it (or a slice of it) spends loop steps."""

    def __iter__(self):
        return _counted(list.__iter__(self))

    def __getitem__(self, index):
        item = list.__getitem__(self, index)
        return CountedList(item) if isinstance(index, slice) else item


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def _check_size(n: int, what: str) -> None:
    if n > MAX_OUTPUT_CHARS:
        raise TokenizerError(f"chat template refused: {what} would hold {n:,} items (limit {MAX_OUTPUT_CHARS:,})")


def _check_arguments(args: tuple, kwargs: dict, what: str) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
            raise TokenizerError(f"chat template refused: {what} called with {value:,} "
                                 f"(limit {MAX_OUTPUT_CHARS:,})")


def _guard_filter(name: str, function):
    @functools.wraps(function)          # keeps jinja's pass_context/pass_environment markers
    def guarded(*args, **kwargs):
        _check_arguments(args[1:], kwargs, f"filter `{name}`")
        return function(*args, **kwargs)
    return guarded


class BoundedNamespace(Namespace):
    def __setitem__(self, name: str, value: Any) -> None:
        _check_size(_size(value), f"namespace value `{name}`")
        super().__setitem__(name, value)


def _namespace(*args: Any, **kwargs: Any) -> BoundedNamespace:
    return BoundedNamespace(*args, **kwargs)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        safe_range = self.globals["range"]
        self.globals["range"] = lambda *args: _counted(safe_range(*args))
        self.globals["namespace"] = _namespace

    def finalize_filters(self) -> None:
        """Call after adding the engine's own filters: every filter checks its integer arguments."""
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        _current()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if _size(seq) and isinstance(count, int):
                    _check_size(_size(seq) * count, "a repeated value")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 64:
                raise TokenizerError(f"chat template refused: {left} ** {right} is too large")
        elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise TokenizerError("chat template refused: a %-format width or precision over the limit")
        elif operator == "+":
            _check_size(_size(left) + _size(right), "a concatenation")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's signature)
        _current().step()
        _check_arguments(args, kwargs, f"`{getattr(__obj, '__name__', type(__obj).__name__)}`")
        return super().call(__context, __obj, *args, **kwargs)


def check_nesting(tree) -> None:
    """Refuse a parsed template (jinja2.nodes.Template) nested deeper than MAX_NESTING (walked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise TokenizerError(f"chat template refused: nested more than {MAX_NESTING} levels deep")
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


def render_bounded(template, **variables: Any) -> str:
    """Render with a fresh budget; the output is cut off at MAX_OUTPUT_CHARS."""
    budget = RenderBudget()
    token = _budget.set(budget)
    try:
        pieces, total = [], 0
        for piece in template.generate(**variables):
            total += len(piece)
            _check_size(total, "the rendered prompt")
            budget.check_time()
            pieces.append(piece)
        return "".join(pieces)
    except RecursionError:
        raise TokenizerError("chat template cut off: recursion too deep") from None
    except MemoryError:
        raise TokenizerError("chat template cut off: out of memory") from None
    finally:
        _budget.reset(token)
