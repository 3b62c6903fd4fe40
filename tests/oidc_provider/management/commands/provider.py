"""``provider user NAME PASSWORD [GROUP ...]`` and ``provider client ID SECRET REDIRECT_URI``."""

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from oauth2_provider.models import Application


class Command(BaseCommand):
    help = "Set up the test provider: a user with exactly these groups, or the TOM's client (PKCE, RS256)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="what", required=True)
        user = sub.add_parser("user")
        user.add_argument("name")
        user.add_argument("password")
        user.add_argument("groups", nargs="*")
        client = sub.add_parser("client")
        client.add_argument("client_id")
        client.add_argument("secret")
        client.add_argument("redirect_uri")

    def handle(self, *args, **options):
        if options["what"] == "user":
            user, _ = User.objects.get_or_create(username=options["name"])
            if not user.check_password(options["password"]):
                # only when it changes: a new password ends the user's sessions at the provider
                user.set_password(options["password"])
            user.first_name, user.last_name = options["name"].title(), "Tester"
            user.email = f"{options['name']}@provider.example.org"
            user.save()
            user.groups.set([Group.objects.get_or_create(name=name)[0] for name in options["groups"]])
        else:
            Application.objects.update_or_create(
                client_id=options["client_id"],
                defaults={
                    "client_secret": options["secret"],
                    "client_type": Application.CLIENT_CONFIDENTIAL,
                    "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
                    "redirect_uris": options["redirect_uri"],
                    # the TOM's home page, where its logout ends (RP-initiated logout comes back there)
                    "post_logout_redirect_uris": options["redirect_uri"].split("/oidc/", 1)[0] + "/",
                    "algorithm": Application.RS256_ALGORITHM,
                    "skip_authorization": True,
                    "name": "the TOM",
                },
            )
