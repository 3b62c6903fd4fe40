"""SNEWS 2.0 in tom_mma_broker: message parsing, the coincidence decider and its stream handler.

:mod:`.messages` and :mod:`.decider` are pure (no Django at import, no Kafka, no clock); :mod:`.service`
keeps the decider's state in the database and queues its alerts in the outbox; :mod:`.handlers` is the
topic handler.
"""
