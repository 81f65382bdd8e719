"""Reference agents for Flightdeck: small agents built on the SDK (flightdeck_sdk), with a
deterministic fake model and no network use. Some behave well; some misbehave on purpose so
that the governance views have something to find. See `reference_agents.catalogue` for the
list and `python -m reference_agents --help` to run them."""
