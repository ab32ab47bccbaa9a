"""Kafka-fed financial sentiment stream: scores news with core's classifier, aggregates per ticker, alerts."""
