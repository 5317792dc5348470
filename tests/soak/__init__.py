"""`./dev soak`: the whole stack under load and faults, then checked (tests/soak/run.py)."""
