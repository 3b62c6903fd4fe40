"""``mmademo [--once]``: the GW170817 pipeline end to end on embedded defaults, then the TOM."""

from __future__ import annotations

import logging

from django.core.management import call_command
from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand
from tom_mma_broker import demo
from tom_mma_broker.embedded import EmbeddedBrokerError
from tom_mma_broker.kafka import embedded_broker


class Command(ExampleCommand):
    help = (
        "Replay GW170817 through the whole pipeline (embedded Kafka, archive, kilonova classifier, derived "
        "alerts, Targets, observation request) and serve the TOM. --once: run the flow, print a summary, exit."
    )
    examples = (
        "./manage.py mmademo            # the flow, then the TOM at http://127.0.0.1:8000/ (Ctrl-C stops all)",
        "./manage.py mmademo --once     # the flow and a summary; nothing left running",
        "./manage.py mmademo --once --speed 0",
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="run the flow to the end, print a summary, exit")
        parser.add_argument(
            "--speed",
            type=float,
            default=None,
            help="seconds of the event per second of replay (default: a day in ~3 s; 0: no pauses)",
        )
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where the TOM is served (default 127.0.0.1:8000)")
        parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the pipeline to settle")

    def handle(self, *args, **options):
        from tom_mma_broker.gw170817 import DEFAULT_SPEED

        speed = DEFAULT_SPEED if options["speed"] is None else options["speed"]
        out = self.stdout
        if options["verbosity"] < 2:
            # the story, not the logs: -v 2 shows every INFO line of the pipeline (whatever level LOGGING gives
            # each logger); undone when the command ends
            logging.disable(logging.INFO)
        call_command("migrate", interactive=False, verbosity=0)
        embedded = embedded_broker()
        # the demo stops what it starts, and only that: a broker the user already runs stays up
        started_broker = embedded.status() is None
        try:
            broker = embedded.start(demo.demo_topics().values())
        except EmbeddedBrokerError as exc:
            raise CommandError(str(exc)) from exc
        stream = thread = None
        try:
            out.write(f"embedded Kafka broker at {broker.url}")
            stream, thread = demo.start_stream()
            self._run(options, broker, stream, thread, speed)
        except KeyboardInterrupt:
            out.write("\nstopping")
        finally:
            if stream is not None:
                stream.stop()
                thread.join(10)
            from tom_mma_broker.publishing import close_producers

            close_producers()  # before the broker goes: a kept producer would retry a dead port
            if started_broker:
                embedded.stop()
                out.write("embedded Kafka broker stopped")
            logging.disable(logging.NOTSET)

    def _run(self, options, broker, stream, thread, speed) -> None:
        from tom_mma_broker.gw170817.replay import ReplayProgress
        from tom_mma_broker.publishing import publish_pending

        out = self.stdout
        messages = demo.demo_messages()
        out.write(f"replaying GW170817: {len(messages)} messages (LVK notices with the real sky map, GRB 170817A's "
                  "Fermi GBM notice, then AT2017gfo's photometry), each marked as a replay")  # fmt: skip
        with ReplayProgress(total=len(messages), stream=self.stdout) as progress:
            ids = demo.run_replay(broker, speed, progress)

        def sweep():  # what the Celery beat sweep does, on embedded defaults
            try:
                publish_pending(timeout=5)
            except Exception as exc:  # noqa: BLE001 - the sweep retries on the next poll; say why
                out.write(f"outbox: {exc}")

        settled = demo.wait_until(lambda: demo.pipeline_settled(ids), options["timeout"], poll=sweep)
        result = demo.summary()
        out.write("\n".join(result.lines()))
        if not settled:
            raise CommandError(f"the pipeline did not settle within {options['timeout']} s (see the log above)")
        username, password = demo.demo_login()
        if options["once"]:
            out.write(self.style.SUCCESS("demo complete"))
            event = result.events[0]["superevent_id"] if result.events else None
            where = f"/gw/{event}/ (the event, its sky map and ranked candidates)" if event else "/gw/"
            out.write(f"to look at it in the TOM: ./manage.py runserver, log in as {username} (password {password}),"
                      f" open {where} and /targets/ (AT2017gfo: photometry, kilonova score history)")  # fmt: skip
            return
        addr = options["addr"]
        target = next(
            (t for t in result.targets if t["name"] == "AT2017gfo"), result.targets[0] if result.targets else None
        )
        out.write(self.style.SUCCESS(f"\nThe TOM is at http://{addr}/  login: {username}  password: {password}"))
        if target:
            out.write(f"AT2017gfo: http://{addr}/targets/{target['id']}/")
        out.write("the stream keeps reading in the background; Ctrl-C stops everything")
        call_command("runserver", addr, use_reloader=False, insecure_serving=True)
