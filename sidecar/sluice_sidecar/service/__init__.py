"""The running service: its settings, its state with the atomic swap, the standalone folder."""
