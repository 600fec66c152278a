"""Pipeline stages, each a small module with one job, built in ``compose.build_pipeline``."""
