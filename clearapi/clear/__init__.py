"""The CLEAR method: confidence signals, their combination, filter/correct policy, the run.

``prompts`` (what is asked) → ``pipeline`` (which calls a row costs, answers → signals) →
``signals`` / ``similarity`` (pure maths) → ``combine`` (one confidence per row) →
``policy`` (keep / drop / correct, with the reason) → ``curation`` (the two-pass run and the
public `curate` / `score`); ``estimate`` prices a run before it starts (``--dry-run``).
"""
