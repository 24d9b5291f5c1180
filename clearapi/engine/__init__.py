"""The provider-agnostic async machinery every call goes through: `Engine`.

`engine.py` fans calls out and accounts for them, `limits.py` paces them under RPM/TPM
limits, `retry.py` decides what is retried and when, `cache.py` makes runs resumable,
`budget.py` keeps ``--max-cost``, `progress.py` draws the bar, `batch.py` sends misses
through providers' batch APIs in batch mode, `breaker.py` stops a run whose server is down.
"""

from clearapi.engine.batch import BatchOptions
from clearapi.engine.breaker import CircuitBreaker
from clearapi.engine.cache import ResponseCache, cache_key, default_cache_path
from clearapi.engine.engine import Engine, RateLimits, Retries
from clearapi.engine.progress import RowsProgress

__all__ = [
    "BatchOptions", "CircuitBreaker", "Engine", "RateLimits", "ResponseCache", "Retries", "RowsProgress", "cache_key",
    "default_cache_path",
]
