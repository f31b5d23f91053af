"""HTTP request and response models: what users send and see, kept apart from the bus
contracts (which the services may change without the API changing), with the conversions
between the two. One module per subject; import from the module, this package re-exports
nothing."""
