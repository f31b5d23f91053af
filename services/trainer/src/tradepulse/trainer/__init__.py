"""TradePulse trainer service: holds training jobs and evaluates trials for every job."""
