"""The adapter protocol, re-exported where adapter authors look for it (defined in `clearapi.protocols`)."""

from __future__ import annotations

from clearapi.protocols import Adapter, BatchCapable, BatchPoll, BatchSubmitter, LineResult

__all__ = ["Adapter", "BatchCapable", "BatchPoll", "BatchSubmitter", "LineResult"]
