"""Faults on the running system, and what they lost or duplicated: the chaos harness.

The system runs as a production TOM runs it, on services of the harness's own (never the machine's shared
ones): a PostgreSQL cluster made with ``initdb`` in a temporary folder and started with ``pg_ctl``, a
``redis-server`` on a free port, the embedded Kafka broker (Tansu), and the TOM's processes: ``readstreams``
(the reliable stream), Celery workers (``--workers`` on the default queue, and one on a queue of the facility
tasks' own unless ``--no-facility-queue``) and Celery beat (the sweeps), with the settings of
``bench/chaos_settings.py``. A GW event (the GW170817 replay's notices and sky map) is active, and each
fault gets a workload of its own: synthetic kilonova-like light curves of new candidates inside the event's
90% region, as source photometry messages, so that every stage runs (archive, candidates, classification,
derived alerts out through the outbox and back in, Targets, photometry, observation requests).

Each fault is injected while that workload is in flight; the harness then waits for the system to settle
and counts, with SQL of its own against the database and a Kafka consumer of its own on the results topic,
what was lost and what was duplicated against its own list of the message ids it published:

============================  ===========================================================================
``kill9-consumer``            ``kill -9`` of ``readstreams`` at random moments, restarted each time
``broker-pause``              the Kafka broker SIGSTOPped (``--pause`` s, default 60), then resumed
``redis-stop``                Redis stopped for ``--pause`` s and started again, empty
``worker-kill``               the Celery worker ``kill -9``-ed while it works, restarted each time
``postgres-restart``          PostgreSQL stopped for a few seconds and started again
``facility-hang``             the facility hangs (20 s, then a timeout), then refuses connections, then
                              answers: the stream must not slow down, requests are retried and say why
``poison``                    1% poison messages among the good ones: each quarantined with its reason
``soak``                      ``--soak-rate`` messages/s for ``--soak-minutes``; every process's RSS over
                              time (plot); after the first fifth of the run (at most 5 minutes) no process
                              may grow by more than 5%. A ``--soak-kilonova-fraction`` of its candidates
                              are kilonova-like (default 0.02: a survey's stream is mostly other
                              transients; 1 makes every candidate a derived alert and a request)
============================  ===========================================================================

Usage::

    python bench/chaos.py                       # every fault, full length (about an hour with the soak)
    python bench/chaos.py --quick               # every fault, seconds each (the test suite's version)
    python bench/chaos.py --faults kill9-consumer,redis-stop --messages 2000
    python bench/chaos.py --soak-minutes 30 --soak-rate 250

It prints a table of the faults, rewrites ``bench/chaos_report.md`` (with ``bench/chaos_soak.png``) unless
``--no-report``, and prints the figures as one JSON object on its last line (``faults``, ``survived``,
``lost``, ``duplicated``, and each fault's counts).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chaos_reporting import rss_growth, soak_plot, table, write_report
from chaos_system import BENCH, ChaosSystem, rss_kb, wait_for
from chaos_workload import Batch, count, make_batch, poison_payload

FAULTS = ("kill9-consumer", "broker-pause", "redis-stop", "worker-kill", "postgres-restart", "facility-hang",
          "poison", "soak")  # fmt: skip


# -- the faults -------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How long and how big each fault is (``--quick``: seconds; default: the issue's lengths)."""

    messages: int = 10_000
    points: int = 10
    kills: int = 10
    pause_s: float = 60.0
    settle_s: float = 900.0
    soak_minutes: float = 30.0
    soak_rate: float = 250.0
    soak_kilonova_fraction: float = 0.02
    hang_s: float = 20.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(messages=120, points=6, kills=3, pause_s=5.0, settle_s=240.0, soak_minutes=0.5, soak_rate=20.0,
                   soak_kilonova_fraction=0.25, hang_s=1.0)  # fmt: skip


class Fault:
    """One fault: make a workload, inject the fault while it is in flight, settle, count."""

    def __init__(self, system: ChaosSystem, plan: Plan, rng: random.Random) -> None:
        self.system, self.plan, self.rng = system, plan, rng
        self.notes: list[str] = []
        self.figures: dict = {}  # the fault's own figures, added to its result
        self.memory_ok = True  # the soak's judgement of the processes' memory
        self.samples: list[tuple[float, dict[str, int | None]]] = []  # the soak's RSS samples, for the plot

    def batch(self, prefix: str, poison_fraction: float = 0.0, share: float = 1.0) -> Batch:
        candidates = max(1, int(self.plan.messages * share) // self.plan.points)
        return make_batch(prefix, candidates, self.plan.points, self.rng, poison_fraction)

    def run(self, name: str) -> dict:
        started = time.monotonic()
        batch = getattr(self, name.replace("-", "_"))()
        settled = self.system.settle(batch, self.plan.settle_s)
        result = count(self.system, batch)
        result.update(fault=name, settled=settled, seconds=round(time.monotonic() - started, 1), notes=self.notes)
        result.update(self.figures)
        result["lost_total"] = sum(result["lost"].values())
        result["duplicated_total"] = sum(result["duplicated"].values())
        clean = result["lost_total"] == 0 and result["duplicated_total"] == 0
        result["survived"] = settled and clean and self.memory_ok
        return result

    def _wait_archived(self, batch: Batch, fraction: float, timeout: float = 120.0) -> bool:
        want = int(len(batch.ids) * fraction)
        return wait_for(lambda: self.system.archived(batch.ids) >= want, timeout)

    def _in_flight(self, prefix: str, archived: float | None = 0.2, **batch_options) -> Batch:
        """A new workload, published; with ``archived``, once that fraction of it is in the archive."""
        batch = self.batch(prefix, **batch_options)
        self.system.publish(batch.messages)
        self.system.flush()
        if archived is not None:
            self._wait_archived(batch, archived)
        return batch

    def kill9_consumer(self) -> Batch:
        batch = self._in_flight("CHK9", archived=None)
        readstreams = self.system.children["readstreams"]
        marks = sorted(self.rng.uniform(0.05, 0.9) for _ in range(self.plan.kills))
        for mark in marks:
            self._wait_archived(batch, mark)
            readstreams.restart()  # kill -9, then start again at once
        self.notes.append(f"{len(marks)} kill -9 of readstreams at {', '.join(f'{m:.0%}' for m in marks)} archived")
        return batch

    def broker_pause(self) -> Batch:
        batch = self.batch("CHBP")
        half = len(batch.messages) // 2
        self.system.publish(batch.messages[:half])
        self.system.flush()
        self._wait_archived(batch, 0.2)
        os.kill(self.system.kafka_pid, signal.SIGSTOP)
        try:
            self.system.publish(batch.messages[half:])  # queued in the producer while the broker is stopped
            time.sleep(self.plan.pause_s)
        finally:
            os.kill(self.system.kafka_pid, signal.SIGCONT)
        self.system.flush(300)
        self.notes.append(f"Kafka broker SIGSTOPped for {self.plan.pause_s:g} s with half the batch in flight")
        return batch

    def redis_stop(self) -> Batch:
        batch = self._in_flight("CHRS")
        self.system.redis.stop()
        time.sleep(self.plan.pause_s)
        self.system.redis.start()
        self.notes.append(f"Redis stopped for {self.plan.pause_s:g} s mid-batch, started again empty")
        return batch

    def worker_kill(self) -> Batch:
        from tom_mma_broker.models import Classification

        batch = self._in_flight("CHWK", archived=None)
        worker = self.system.children["worker"]
        kills = 0
        for _ in range(max(1, self.plan.kills // 2)):
            before = Classification.objects.filter(candidate__name__startswith=batch.prefix).count()
            # kill while it works: after it has classified something more
            wait_for(lambda b=before: Classification.objects.filter(candidate__name__startswith=batch.prefix)
                     .count() > b, 120, interval=0.05)  # fmt: skip
            worker.restart()
            kills += 1
        self.notes.append(f"{kills} kill -9 of the Celery worker while it classified")
        return batch

    def postgres_restart(self) -> Batch:
        batch = self._in_flight("CHPG")
        down = min(self.plan.pause_s, 10.0)
        self.system.pg.stop()
        time.sleep(down)
        self.system.pg.start()
        from django.db import connections

        connections.close_all()
        self.notes.append(f"PostgreSQL stopped (fast) for {down:g} s mid-batch, started again")
        return batch

    def facility_hang(self) -> Batch:
        from tom_mma.models import ObservationTrigger

        # a quarter of the messages each: every candidate is a request, and a hung facility holds the worker that
        # talks to it (by default the facility queue's own, as docs/running.md advises; --no-facility-queue: the
        # one worker that also classifies)
        batch = self.batch("CHFH", share=0.25)
        baseline = self.batch("CHFB", share=0.25)
        t0 = time.monotonic()
        self.system.publish(baseline.messages)
        self.system.flush()
        wait_for(lambda: self.system.archived(baseline.ids) >= len(baseline.ids), 300)
        baseline_s = time.monotonic() - t0
        self.system.facility_file.write_text(f"hang {self.plan.hang_s:g}")
        t0 = time.monotonic()
        self.system.publish(batch.messages)
        self.system.flush()
        wait_for(lambda: self.system.archived(batch.ids) >= len(batch.ids), 300)
        faulted_s = time.monotonic() - t0
        wait_for(lambda: ObservationTrigger.objects.filter(target__name__startswith=batch.prefix)
                 .exclude(error="").exists(), 120)  # fmt: skip
        self.system.facility_file.write_text("error")
        time.sleep(self.plan.pause_s)
        errors = set(ObservationTrigger.objects.filter(target__name__startswith=batch.prefix).exclude(error="")
                     .values_list("error", flat=True)[:20])  # fmt: skip
        self.system.facility_file.write_text("ok")
        said = "; ".join(sorted(e[:70] for e in errors)[:2])
        self.notes.append(f"archive time of the batch: {faulted_s:.1f} s with the facility hung, {baseline_s:.1f} s "
                          f"before (same size); requests said: {said}")  # fmt: skip
        self.figures["stream_slowdown"] = round(faulted_s / baseline_s, 2) if baseline_s else None
        return batch

    def poison(self) -> Batch:
        batch = self.batch("CHPO", poison_fraction=0.01)
        if not batch.poison:  # a small quick run may draw none: one at least
            message_id, payload, key = batch.messages[len(batch.messages) // 2]
            del batch.points[key]
            batch.poison.add(message_id)
            batch.messages[len(batch.messages) // 2] = (message_id, poison_payload(self.rng, payload), key)
        self.system.publish(batch.messages)
        self.system.flush()
        self.notes.append(f"{len(batch.poison)} poison messages among {len(batch.messages)}")
        return batch

    def soak(self) -> Batch:
        seconds = self.plan.soak_minutes * 60
        total = int(seconds * self.plan.soak_rate)
        candidates = max(1, total // self.plan.points)
        batch = make_batch("CHSK", candidates, self.plan.points, self.rng,
                           kilonova_fraction=self.plan.soak_kilonova_fraction)  # fmt: skip
        samples: list[tuple[float, dict[str, int | None]]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.wait(max(1.0, seconds / 120)):
                samples.append((time.monotonic() - t0, self.rss()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.system.publish(batch.messages, rate=self.plan.soak_rate)
        self.system.flush()
        stop.set()
        sampler.join()
        self.samples = samples
        measured = {k: v for k, v in rss_growth(samples, warmup_s=min(300.0, seconds / 5)).items() if v is not None}
        self.figures["rss_growth"] = {k: round(v, 4) for k, v in measured.items()}
        # the TOM's processes are judged; Redis and the embedded Kafka broker (memory only: it keeps every message
        # in RAM by design) grow with what they hold, and are reported beside them
        judged = [measured.get(name) for name in self.system.children]
        self.memory_ok = bool(measured) and all(v is None or v <= 0.05 for v in judged)
        growth = ", ".join(f"{k} {v:+.1%}" for k, v in measured.items())
        self.notes.append(f"{total} messages at {self.plan.soak_rate:g}/s for {self.plan.soak_minutes:g} min, "
                          f"{self.plan.soak_kilonova_fraction:.0%} of the candidates kilonova-like; "
                          f"RSS growth after warm-up: {growth}")  # fmt: skip
        return batch

    def rss(self) -> dict[str, int | None]:
        pids = {name: child.pid for name, child in self.system.children.items()}
        pids.update(redis=self.system.redis.pid, kafka=self.system.kafka_pid, postgres=self.system.pg.pid())
        return {name: rss_kb(pid) for name, pid in pids.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--quick", action="store_true", help="seconds per fault (the test suite's version)")
    parser.add_argument("--messages", type=int, help="messages per fault (default 10,000; --quick 300)")
    parser.add_argument("--pause", type=float, help="seconds a paused broker or stopped Redis stays down (60)")
    parser.add_argument("--soak-minutes", type=float, help="length of the soak (30)")
    parser.add_argument("--soak-rate", type=float, help="messages per second of the soak (250, Rubin's mean)")
    parser.add_argument("--soak-kilonova-fraction", type=float,
                        help="fraction of the soak's candidates that are kilonova-like (0.02)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="solo Celery workers on the default queue (1)")
    parser.add_argument("--no-facility-queue", action="store_true",
                        help="facility tasks on the default queue too (no facility worker of their own)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="where the private services live (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) afterwards")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite bench/chaos_report.md")
    parser.add_argument("--report-from", metavar="FILE", help="rewrite the report from a run's JSON line, run nothing")
    args = parser.parse_args(argv)
    if args.report_from:
        figures = json.loads(Path(args.report_from).read_text().strip().splitlines()[-1])
        figures["lost"] = sum(r["lost_total"] for r in figures["results"] if r["settled"])
        figures["unsettled"] = [r["fault"] for r in figures["results"] if not r["settled"]]
        plot = "chaos_soak.png" if (BENCH / "chaos_soak.png").exists() else None
        write_report(figures["results"], figures, BENCH / "chaos_report.md", plot)
        print(json.dumps({k: v for k, v in figures.items() if k != "results"}))
        return figures
    plan = Plan.quick() if args.quick else Plan()
    options = {"messages": args.messages, "pause_s": args.pause, "soak_minutes": args.soak_minutes,
               "soak_rate": args.soak_rate, "soak_kilonova_fraction": args.soak_kilonova_fraction}  # fmt: skip
    for name, value in options.items():
        if value is not None:
            setattr(plan, name, value)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="tom-mma-chaos-"))
    system = ChaosSystem(workdir, workers=args.workers, facility_queue=not args.no_facility_queue)
    rng = random.Random(args.seed)
    # a harness stopped with SIGTERM still stops its private services (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[dict] = []
    plot = None
    try:
        system.start()
        for name in faults:
            fault = Fault(system, plan, rng)
            result = fault.run(name)
            if name == "soak":
                if not args.no_report:
                    soak_plot(fault.samples, BENCH / "chaos_soak.png", min(300.0, plan.soak_minutes * 12))
                    plot = "chaos_soak.png"
            results.append(result)
            print(
                f"{name}: {'survived' if result['survived'] else 'FAILED'} lost {result['lost_total']} "
                f"duplicated {result['duplicated_total']} ({result['seconds']} s)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        system.stop()
        if not args.keep:
            system.pg.remove()
            shutil.rmtree(workdir, ignore_errors=True)
    figures = {
        "faults": len(results),
        "survived": sum(r["survived"] for r in results),
        "lost": sum(r["lost_total"] for r in results if r["settled"]),
        "unsettled": [r["fault"] for r in results if not r["settled"]],
        "duplicated": sum(r["duplicated_total"] for r in results),
        "supervised_restarts": system.supervised_restarts,
        "run": f"{'--quick' if args.quick else 'full'}: {plan.messages} messages per fault, {plan.pause_s:g} s "
        f"pauses, {plan.kills} kills, soak {plan.soak_minutes:g} min at {plan.soak_rate:g}/s "
        f"({plan.soak_kilonova_fraction:.0%} kilonova-like), seed {args.seed}; "
        f"{args.workers} worker(s) on the default queue, "
        f"{'none' if args.no_facility_queue else 'one'} on a facility queue of its own",
        "results": results,
    }
    print(table(results))
    if not args.no_report:
        write_report(results, figures, BENCH / "chaos_report.md", plot)
    print(json.dumps(figures, default=str))
    return figures


if __name__ == "__main__":
    main()
