"""Sluice sidecar: the data plane proxy."""
