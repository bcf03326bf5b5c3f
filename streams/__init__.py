"""The layer that touches the world: Faust app, topics, Redis and metrics adapters, agents, CLI."""
