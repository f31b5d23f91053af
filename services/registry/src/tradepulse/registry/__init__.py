"""TradePulse registry: configurations born from finished training jobs, and their lifecycle."""
