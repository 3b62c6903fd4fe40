"""An index on the declination of tomtoolkit's Targets, for tom-mma's cone searches.

Every alert that may become a Target looks for an existing one within a cone (``tom_mma.targets``): a
declination band in SQL, then the exact separation. tomtoolkit indexes no coordinate, so without this the band
is a scan of every Target (at a Rubin night's rate, once or twice per alert). The index is tom-mma's own
(its name says so) and goes with tom-mma's migrations; tomtoolkit's table is otherwise untouched.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tom_mma", "0006_oidc_identities"),
        ("tom_targets", "0031_basetarget_shared_by_basetarget_shared_from"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS tom_mma_target_dec ON tom_targets_basetarget (dec)",
            "DROP INDEX IF EXISTS tom_mma_target_dec",
        ),
    ]
