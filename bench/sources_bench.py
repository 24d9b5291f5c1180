"""Rows/s reading the same rows as JSONL, Parquet and a pandas DataFrame through `open_input`,
and the cost of the progress bar's row count. Prints figures; asserts nothing.

    python bench/sources_bench.py [ROWS]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from clearapi.sources import count_rows, open_input


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rows = [{"id": f"r{i}", "question": f"What is {i} + {i}?", "answer": f"It is {2 * i}."} for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "rows.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        sources: dict[str, object] = {"jsonl": jsonl}
        try:
            import pandas as pd

            frame = pd.DataFrame(rows)
            parquet = Path(tmp) / "rows.parquet"
            frame.to_parquet(parquet)
            sources.update(parquet=parquet, dataframe=frame)
        except ImportError:
            print("pandas/pyarrow missing: JSONL only")
        for name, source in sources.items():
            reader = open_input(source)
            start = time.perf_counter()
            total = count_rows(reader)
            counted = time.perf_counter() - start
            start = time.perf_counter()
            examples = sum(1 for _ in reader)
            took = time.perf_counter() - start
            print(f"{name:9s} {examples:,} rows in {took:.2f} s = {examples / took:,.0f} rows/s; "
                  f"count_rows {total:,} in {counted * 1000:.1f} ms")


if __name__ == "__main__":
    main()
