"""clearapi: curate instruction-tuning data with CLEAR confidence scores over LLM APIs.

Everything public is re-exported here; internal modules are free to move.
"""

from clearapi._version import __version__
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

__all__ = [
    "AuthError",
    "BadRequest",
    "BudgetExceeded",
    "Capabilities",
    "CapabilityError",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ClearAPIError",
    "ConfigError",
    "Decision",
    "Example",
    "FatalError",
    "InputError",
    "Message",
    "Profile",
    "QuotaExhausted",
    "RateLimited",
    "Reject",
    "RowCounts",
    "RunStats",
    "Score",
    "Summary",
    "TokenLogprob",
    "TopLogprob",
    "TransientError",
    "Usage",
    "__version__",
    "list_profiles",
    "load_profile",
]
