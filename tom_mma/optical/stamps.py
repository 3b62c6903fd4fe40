"""Cutouts (science, template, difference stamps) of optical alerts kept as ``DataProduct`` files.

The stamps of the newest ``TOM_MMA['OPTICAL_CUTOUTS_KEPT']`` alerts of each Target and survey are kept; older
ones are deleted, their files after the commit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.db import transaction
from tom_dataproducts.models import DataProduct

from tom_mma.conf import mma_settings

from .alerts import OpticalAlert

__all__ = ["CUTOUT_PREFIX", "store_cutouts"]

#: ``DataProduct.product_id`` of a stamp: ``optical:<survey>:<alert id>:<kind>``
CUTOUT_PREFIX = "optical:"
_CUTOUT_PREFIX = CUTOUT_PREFIX


def _fits_type() -> str:
    types = getattr(settings, "DATA_PRODUCT_TYPES", None) or {"fits_file": ()}
    return "fits_file" if "fits_file" in types else ""


def _product_alert(product: DataProduct) -> str:
    """The alert id in a stamp's ``product_id`` (``optical:<survey>:<alert id>:<kind>``)."""
    parts = product.product_id.split(":")
    return parts[2] if len(parts) >= 3 else product.product_id


def _product_mjd(product: DataProduct) -> float:
    try:
        return float(json.loads(product.extra_data)["mjd"])
    except (ValueError, KeyError, TypeError):
        return 0.0


class _Stamps:
    """The stamps of one Target and survey during a batch: those stored and those the batch will write."""

    def __init__(self, stored: list[DataProduct]) -> None:
        self.stored = stored
        self.by_alert: dict[str, float] = {}
        for product in stored:
            self.by_alert[_product_alert(product)] = _product_mjd(product)
        self.pending: dict[str, OpticalAlert] = {}
        self.doomed: list[DataProduct] = []

    def add(self, alert: OpticalAlert, kept: int | None) -> int:
        """Take the alert's stamps if they are among the ``kept`` newest; return how many it adds."""
        if alert.alert_id in self.by_alert:
            return 0  # this alert's stamps are there already (a replay)
        self.by_alert[alert.alert_id] = alert.mjd
        ranked = sorted(self.by_alert, key=lambda a: (self.by_alert[a], a), reverse=True)
        keep = set(ranked[:kept]) if kept is not None else set(ranked)
        added = 0
        if alert.alert_id in keep:
            self.pending[alert.alert_id] = alert
            added = len(alert.cutouts)
        # what fell out of the newest: stored stamps are deleted, the batch's own are never written
        self.by_alert = {a: mjd for a, mjd in self.by_alert.items() if a in keep}
        self.pending = {a: pending for a, pending in self.pending.items() if a in keep}
        self.doomed += [p for p in self.stored if _product_alert(p) not in keep]
        self.stored = [p for p in self.stored if _product_alert(p) in keep]
        return added


def store_cutouts(targets: Sequence[Any], alerts: Sequence[OpticalAlert], fresh: set) -> list[int]:
    """Keep the stamps of the newest ``OPTICAL_CUTOUTS_KEPT`` alerts of each Target; the number each alert added.

    One query for the stamps the batch's Targets have, one insert for the new ones, one delete for
    those a newer alert replaced (their files after the commit).
    """
    kept = mma_settings.OPTICAL_CUTOUTS_KEPT
    if kept == 0:
        return [0] * len(alerts)
    with_stamps = [(t, a) for t, a in zip(targets, alerts, strict=True) if a.cutouts]
    old = sorted({t.pk for t, _ in with_stamps if t.pk not in fresh})
    stored: dict[tuple[Any, str], list[DataProduct]] = {}
    for start in range(0, len(old), 500):
        for product in DataProduct.objects.filter(
            target_id__in=old[start : start + 500], product_id__startswith=_CUTOUT_PREFIX
        ).only("pk", "target_id", "product_id", "extra_data", "data"):
            survey = product.product_id.split(":")[1] if product.product_id.count(":") >= 1 else ""
            stored.setdefault((product.target_id, survey), []).append(product)
    stamps: dict[tuple[Any, str], _Stamps] = {}
    added = []
    for target, alert in zip(targets, alerts, strict=True):
        if not alert.cutouts:
            added.append(0)
            continue
        key = (target.pk, alert.survey)
        if key not in stamps:
            stamps[key] = _Stamps(stored.get(key, []))
        added.append(stamps[key].add(alert, kept))
    by_pk = {t.pk: t for t in targets}
    products, doomed = [], []
    writer = _StampWriter()
    for (pk, _survey), state in stamps.items():
        doomed += state.doomed
        for alert in state.pending.values():
            products += _stamp_products(by_pk[pk], alert, writer)
    if products:
        DataProduct.objects.bulk_create(products, batch_size=500)
    if doomed:
        names = [p.data.name for p in doomed if p.data]
        storage = DataProduct._meta.get_field("data").storage
        DataProduct.objects.filter(pk__in=[p.pk for p in doomed]).delete()
        # files go only once the rows are gone for good (a rollback keeps both)
        transaction.on_commit(lambda: [storage.delete(n) for n in names if storage.exists(n)], robust=True)
    return added


def _extension(filename: str) -> str:
    """The FITS extension of a stamp's file name (``.fits.gz`` or ``.fits``), else its last suffix.

    >>> _extension("candid123_pid456_targ_sci.fits.gz"), _extension("x_science.fits"), _extension("stamp")
    ('.fits.gz', '.fits', '')
    """
    base = filename.rsplit("/", 1)[-1].lower()
    for ext in (".fits.gz", ".fits.fz", ".fits"):
        if base.endswith(ext):
            return ext
    suffix = base.rpartition(".")[2] if "." in base else ""
    return f".{suffix}" if suffix and suffix.isalnum() and len(suffix) <= 8 else ""


class _StampWriter:
    """Writes a batch's stamp files: straight to disk on a ``FileSystemStorage``, else through the storage.

    Django's ``FileSystemStorage.save`` costs ~0.3 ms a file in its checks and directory walks (a
    third of a ZTF batch for three stamps an alert); the name is the one it would choose (the field's
    ``upload_to``), and the file is created exclusively, so an existing file of that name takes the
    storage's own path (which picks a free name). Each directory is made once per batch.
    """

    def __init__(self) -> None:
        self.field = DataProduct._meta.get_field("data")
        self.storage = self.field.storage
        # the plain storage with its default modes (any other takes its own path)
        # (``default_storage`` is a lazy wrapper: its ``__class__`` is the wrapped storage's)
        self.direct = self.storage.__class__ is FileSystemStorage and self.storage.directory_permissions_mode is None
        self.mode = self.storage.file_permissions_mode
        self.made: set[str] = set()

    def write(self, product: DataProduct, filename: str, data: bytes) -> None:
        if self.direct:
            name = self.field.generate_filename(product, filename)
            if self.field.max_length and len(name) > self.field.max_length:
                product.data.save(filename, ContentFile(data), save=False)  # the storage shortens it
                return
            path = self.storage.path(name)
            folder = os.path.dirname(path)
            if folder not in self.made:
                os.makedirs(folder, exist_ok=True)
                self.made.add(folder)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                pass  # the storage's own path picks a free name
            else:
                with os.fdopen(fd, "wb") as out:
                    if self.mode is not None:
                        os.fchmod(out.fileno(), self.mode)
                    out.write(data)
                product.data = name.replace("\\", "/")
                return
        product.data.save(filename, ContentFile(data), save=False)


def _stamp_products(target: Any, alert: OpticalAlert, writer: _StampWriter | None = None) -> list[DataProduct]:
    """The alert's stamps as unsaved ``DataProduct`` rows, their files written."""
    writer = writer or _StampWriter()
    prefix = f"{_CUTOUT_PREFIX}{alert.survey}:"
    products = []
    data_type = _fits_type()
    for cutout in alert.cutouts:
        product = DataProduct(
            product_id=f"{prefix}{alert.alert_id}:{cutout.kind}", target=target, data_product_type=data_type,
            extra_data=json.dumps({"mjd": alert.mjd, "kind": cutout.kind, "alert_id": alert.alert_id,
                                   "survey": alert.survey, "source": "tom_mma.optical"}),
        )  # fmt: skip
        name = f"{alert.survey}_{alert.alert_id}_{cutout.kind}{_extension(cutout.filename)}"
        writer.write(product, name, cutout.data)
        products.append(product)
    return products
