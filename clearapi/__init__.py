"""clearapi: curate instruction-tuning data with CLEAR confidence scores over LLM APIs.

Everything public is re-exported here; internal modules are free to move.
"""

from clearapi._version import __version__
from clearapi.api import curate_sync, load_results, score_sync
from clearapi.clear.curation import curate, estimate, score
from clearapi.clear.options import CurateOptions
from clearapi.datasets import DatasetReader, ReadStats, read_examples, to_openai_chat
from clearapi.engine import BatchOptions, Engine, RateLimits, Retries
from clearapi.errors import (
    AuthError,
    BadRequest,
    BudgetExceeded,
    CapabilityError,
    ClearAPIError,
    ConfigError,
    FatalError,
    InputError,
    QuotaExhausted,
    RateLimited,
    ServiceDown,
    TransientError,
)
from clearapi.profiles import Profile, list_profiles, load_profile
from clearapi.records import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    Choice,
    Decision,
    Example,
    FailedRow,
    Message,
    Reject,
    RowCounts,
    RunStats,
    Score,
    Summary,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from clearapi.report import write_report
from clearapi.writers import AtomicJsonlWriter, write_json_atomic, write_jsonl_atomic

__all__ = [
    "AtomicJsonlWriter",
    "AuthError",
    "BadRequest",
    "BatchOptions",
    "BudgetExceeded",
    "Capabilities",
    "CapabilityError",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ClearAPIError",
    "ConfigError",
    "CurateOptions",
    "DatasetReader",
    "Decision",
    "Engine",
    "Example",
    "FailedRow",
    "FatalError",
    "InputError",
    "Message",
    "Profile",
    "QuotaExhausted",
    "RateLimited",
    "RateLimits",
    "ReadStats",
    "Reject",
    "Retries",
    "RowCounts",
    "RunStats",
    "Score",
    "ServiceDown",
    "Summary",
    "TokenLogprob",
    "TopLogprob",
    "TransientError",
    "Usage",
    "__version__",
    "curate",
    "curate_sync",
    "estimate",
    "list_profiles",
    "load_profile",
    "load_results",
    "read_examples",
    "score",
    "score_sync",
    "to_openai_chat",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_report",
]
