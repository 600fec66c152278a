"""Sluice operator: the control plane."""
