"""Helpers every kind of test shares: waiting with a deadline, reading the bus's state."""
