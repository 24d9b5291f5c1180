"""Cost accounting and the ``--max-cost`` budget.

A call's cost is only known after it returns, so the budget reserves each uncached call's
*worst case* before sending it (the prompt estimate at the input price plus every token it
may generate at the output price) and settles to the real cost from ``usage`` afterwards.
A call is refused when spent + reserved + its worst case would pass the limit: the run
stops *before* exceeding the budget, not after. A budget without a known price cannot be
kept, so the engine refuses to start rather than pass silently.
"""

from __future__ import annotations

from collections.abc import Sequence

from clearapi.errors import BudgetExceeded
from clearapi.profiles import Price
from clearapi.records import Message, Usage

__all__ = ["Budget", "prompt_tokens_estimate"]


def prompt_tokens_estimate(messages: Sequence[Message]) -> float:
    """About 4 characters a token, plus a few tokens of framing per message: what a call is
    reserved at before it is sent, and what ``--dry-run`` counts."""
    return sum(len(m.content) for m in messages) / 4.0 + 4.0 * len(messages)


class Budget:
    def __init__(self, max_cost: float | None, price: Price | None) -> None:
        self.max_cost = max_cost
        self.price = price
        self.spent = 0.0
        self.reserved = 0.0

    @property
    def cost_known(self) -> bool:
        return self.price is not None

    def cost(self, usage: Usage) -> float:
        if self.price is None:
            return 0.0
        return (usage.prompt_tokens * self.price.input + usage.completion_tokens * self.price.output) / 1e6

    def worst_case(self, prompt_tokens: float, completion_tokens: float) -> float:
        return self.cost(Usage(prompt_tokens=int(prompt_tokens) + 1, completion_tokens=int(completion_tokens)))

    def reserve(self, worst: float) -> float:
        """Hold `worst` dollars for a call about to be sent, or raise `BudgetExceeded`."""
        if self.max_cost is not None and self.spent + self.reserved + worst > self.max_cost:
            raise BudgetExceeded(
                f"the next call could cost up to ${worst:.4f}; ${self.spent:.4f} spent and "
                f"${self.reserved:.4f} held by calls in flight, of a --max-cost of ${self.max_cost:.2f}. "
                "Stopping before the budget is passed; finished work is saved in the cache, so a re-run "
                "with a larger --max-cost pays only for what is missing.")
        self.reserved += worst
        return worst

    def settle(self, reserved: float, usage: Usage | None) -> float:
        """Release a reservation and book what the call really cost (0 if it failed)."""
        self.reserved = max(0.0, self.reserved - reserved)
        actual = self.cost(usage) if usage is not None else 0.0
        self.spent += actual
        return actual
