"""Management commands of the app (see ``commands``)."""
