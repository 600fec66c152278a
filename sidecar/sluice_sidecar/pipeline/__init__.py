"""Pipeline stages: each a small module with one job, composed in ``sluice_sidecar.api.proxy``."""
