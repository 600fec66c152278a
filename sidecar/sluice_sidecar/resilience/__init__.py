"""Resilience primitives below the transports: the breaker state machine, backoff, wait headers."""
