"""The economics core: budgets and their stores, usage and prices, the ledger, sessions, cache."""
