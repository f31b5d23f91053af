"""The ingest service: owns market data (schema `market`).

Pulls candles from exchanges through ccxt or reads CSV/Parquet files, validates them with the
quant core, stores each candle once, keeps a coverage and gap report per dataset, writes a
snapshot of the whole dataset to the candles object store and publishes `CandlesIngested`.
"""
