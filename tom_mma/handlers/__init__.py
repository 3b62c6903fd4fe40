"""``TOPIC_HANDLERS`` functions of tom_mma: ``handler(alert, metadata)``; one module per source."""
