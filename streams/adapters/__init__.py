"""The worker's adapters to the world: Kafka, RocksDB, Redis, the gift-card provider, Prometheus."""
