"""Optical alert streams: ZTF and Rubin packets and Fink's livestream, into Targets that grow.

* :mod:`tom_mma.optical.packets`: the wire forms (Avro files, Fink's schema-as-key messages, Rubin's
  Confluent frames), from a message, a file or a folder;
* :mod:`tom_mma.optical.alerts`: the one normaliser, into frozen :class:`~tom_mma.optical.alerts.OpticalAlert`;
* :mod:`tom_mma.optical.service`: one alert grows one Target.

The topic handlers are in :mod:`tom_mma.handlers.optical`. See ``docs/optical.md``.
"""
