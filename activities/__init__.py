"""Activities: every side effect of a run, each idempotent under Temporal's retries."""
