"""`--target hf`: a Hugging Face dataset folder (Parquet under ``data/`` and a short dataset card).

The rows are TRL's conversational ``messages`` (the ``trl-sft`` renderer), so the folder loads with
``datasets.load_dataset(folder)`` and trains with TRL, Axolotl or Unsloth as it is, and can be pushed
to the Hub unchanged. Rows are written in batches, so memory does not grow with the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import orjson

from clearapi.errors import ConfigError

__all__ = ["write_hf_dataset"]

_BATCH: Final = 1024


def write_hf_dataset(splits: dict[str, Path], out_dir: Path, *, source: str, counts: dict[str, int]) -> list[Path]:
    """Write each split's JSONL records (``{"messages": [...]}``) as ``data/<split>.parquet`` under
    `out_dir`, plus ``README.md``; return the files written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("--target hf writes Parquet, which needs pyarrow: pip install 'clearapi[parquet]'") from exc
    schema = pa.schema([("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))])
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sizes: dict[str, int] = {}
    for split, jsonl in splits.items():
        target = out_dir / "data" / f"{split}.parquet"
        n = 0
        with pq.ParquetWriter(target, schema) as writer, jsonl.open("rb") as fh:
            batch: list[dict[str, Any]] = []
            for line in fh:
                if line.strip():
                    rec = orjson.loads(line)
                    batch.append({"messages": [{"role": m["role"], "content": m["content"]}
                                               for m in rec["messages"]]})
                if len(batch) >= _BATCH:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    n += len(batch)
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
        sizes[split] = n
        written.append(target)
    card = out_dir / "README.md"
    card.write_text(_card(sizes, source, counts), encoding="utf-8")
    written.append(card)
    return written


def _card(sizes: dict[str, int], source: str, counts: dict[str, int]) -> str:
    files = "\n".join(f"      - split: {split}\n        path: data/{split}.parquet" for split in sizes)
    rows = ", ".join(f"{n} {split}" for split, n in sizes.items())
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(counts.items()) if n) or "none"
    return f"""---
configs:
  - config_name: default
    data_files:
{files}
task_categories:
  - text-generation
tags:
  - clearapi
  - sft
  - conversational
---

# Curated conversations

Chat rows (`messages`: role and content) for supervised fine-tuning, written by clearapi from `{source}`.
Rows were scored with CLEAR confidence; low-confidence rows were dropped or replaced by a confident,
pairwise-preferred model answer. Rows: {rows}. Left out: {skipped}.

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder")   # or the Hub name after push_to_hub
```

Works as it is with TRL's `SFTTrainer` (conversational format), Axolotl (`type: chat_template`) and Unsloth.
"""
