"""Pieces of crispy-forms layouts shared by tom_mma's query forms (the broker form, the Data Services)."""

from __future__ import annotations

from crispy_forms.layout import Column, Fieldset, Row

__all__ = ["cone_fieldset"]


def cone_fieldset(ra: str = "ra", dec: str = "dec", radius: str = "radius_arcsec") -> Fieldset:
    """A "Cone" fieldset: the centre's RA and Dec and the radius side by side.

    Parameters
    ----------
    ra, dec, radius : str
        The form's field names.
    """
    return Fieldset("Cone", Row(Column(ra, css_class="col"), Column(dec, css_class="col"),
                                Column(radius, css_class="col")))  # fmt: skip
