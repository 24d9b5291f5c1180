"""Fine-tuning outputs: render to each service's format, validate against its published
rules, split, and upload to OpenAI.

Flow: `targets.render` / `render_preference` (one record per example) -> `convert` (a file,
optionally split by `split.split_rows`) -> `validate.validate_file` (linter findings, token
counts from `tokens`, cost per epoch) -> `upload.submit_job` / `watch_job`. The services'
rules, with their sources and the date they were read, live in `rules`.
"""

from clearapi.finetune.convert import ConvertResult, convert
from clearapi.finetune.rules import RULE_IDS, SERVICE_RULES, Finding
from clearapi.finetune.split import split_rows
from clearapi.finetune.targets import TARGETS, RenderError, Target, record_for, render, render_preference
from clearapi.finetune.validate import ValidationReport, format_report, validate_file

__all__ = [
    "RULE_IDS",
    "SERVICE_RULES",
    "TARGETS",
    "ConvertResult",
    "Finding",
    "RenderError",
    "Target",
    "ValidationReport",
    "convert",
    "format_report",
    "record_for",
    "render",
    "render_preference",
    "split_rows",
    "validate_file",
]
