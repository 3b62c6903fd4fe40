"""tom-mma's query forms in tomtoolkit 3's Data Services menu (``tom_dataservices``).

Two services, declared by ``tom_mma``'s AppConfig (:meth:`tom_mma.apps.TomMmaConfig.data_services`) when
``tom_dataservices`` is installed:

* ``MMA-Archive`` (:mod:`tom_mma.dataservices.archive`): this TOM's own stored alerts (derived, optical, GW
  candidates), searched by :func:`tom_mma.archive.search_archive`;
* ``MMA-Fink`` (:mod:`tom_mma.dataservices.fink`): Fink's REST API, through :mod:`tom_mma.optical.fink_api`;
  a result becomes a Target through the optical stream's own service
  (:func:`tom_mma.optical.service.ingest_optical_alert`).

The modules import ``tom_dataservices``: only that app imports them, through the hook.
"""

__all__ = ["SERVICES"]

#: The dotted paths of the services, as ``AppConfig.data_services()`` returns them.
SERVICES = [
    {"class": "tom_mma.dataservices.archive.ArchiveDataService"},
    {"class": "tom_mma.dataservices.fink.FinkDataService"},
]
