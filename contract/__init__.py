"""What a run directory holds, shared by the code that writes it (runners/) and the code that
reads it (analysis/): file names, run statuses, metric names, the config keys that are not part
of a run's identity, and the baseline optimizer. Plain Python: no torch, no project imports, so
analysis can depend on it without loading any training code."""
