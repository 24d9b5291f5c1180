"""Adapters, one module per wire protocol; `create_adapter` (in `clearapi.connect`) picks one by profile."""

from __future__ import annotations

from clearapi.connect import ADAPTERS, create_adapter, resolve_api_key
from clearapi.protocols import Adapter

__all__ = ["ADAPTERS", "Adapter", "create_adapter", "resolve_api_key"]
