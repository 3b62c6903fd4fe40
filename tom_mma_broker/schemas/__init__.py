"""Versioned message schemas tom_mma_broker publishes and reads."""
