"""The chaos harness's report: the table, the soak's memory figures and plot, ``bench/chaos_report.md``."""

from __future__ import annotations

from pathlib import Path


def rss_growth(samples: list[tuple[float, dict[str, int | None]]], warmup_s: float) -> dict[str, float | None]:
    """Each process's RSS growth from the first sample after ``warmup_s`` to the end (its max over the last 10%)."""
    after = [s for s in samples if s[0] >= warmup_s]
    if len(after) < 2:
        return {}
    growth: dict[str, float | None] = {}
    tail = after[-max(1, len(after) // 10) :]
    for name in after[0][1]:
        first = after[0][1].get(name)
        last = max((s[1].get(name) or 0) for s in tail)
        growth[name] = (last - first) / first if first else None
    return growth


# -- the report -------------------------------------------------------------------------------------------------
def soak_plot(samples: list[tuple[float, dict[str, int | None]]], path: Path, warmup_s: float) -> None:
    """RSS of every process over the soak (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    names = sorted({n for _, s in samples for n in s})
    for name in names:
        xs = [t / 60 for t, s in samples if s.get(name)]
        ys = [s[name] / 1024 for t, s in samples if s.get(name)]
        ax.plot(xs, ys, label=name)
    ax.axvline(warmup_s / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes into the soak")
    ax.set_ylabel("RSS (MiB)")
    ax.set_yscale("log")
    ax.set_title("Resident memory of every process during the soak")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(results: list[dict]) -> str:
    """The faults as a Markdown table."""
    lines = ["| fault | survived | messages | lost | duplicated | settled in | what happened |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        lost = ", ".join(f"{k} {v}" for k, v in r["lost"].items() if v) or "0"
        if not r["settled"]:  # what is missing then may still be on its way: not counted as lost
            lost = f"not settled in {r['seconds']} s; still to do: {lost}"
        dup = ", ".join(f"{k} {v}" for k, v in r["duplicated"].items() if v) or "0"
        lines.append(f"| `{r['fault']}` | {'yes' if r['survived'] else '**no**'} | {r['messages']} | {lost} | {dup} "
                     f"| {r['seconds']} s | {'; '.join(r['notes'])} |")  # fmt: skip
    return "\n".join(lines)


def write_report(results: list[dict], figures: dict, path: Path, plot: str | None) -> None:
    """``bench/chaos_report.md``: what was run, the table, the soak plot."""
    text = [
        "# Chaos report",
        "",
        "Written by `python bench/chaos.py` (do not edit by hand). Faults injected on the running system "
        "(private PostgreSQL, Redis, the embedded Kafka broker, `readstreams`, a Celery worker and beat); lost and "
        "duplicated counted with the harness's own SQL and Kafka consumer against the ids it published.",
        "",
        f"Run: {figures['run']}",
        "",
        table(results),
        "",
        f"**{figures['survived']} of {figures['faults']} faults survived; lost {figures['lost']}, duplicated "
        f"{figures['duplicated']}** (of the faults that settled; not settled: "
        f"{', '.join(figures.get('unsettled') or []) or 'none'}). Processes restarted by the harness's supervisor "
        f"after dying on their own (as systemd would): {figures['supervised_restarts'] or 'none'}.",
        "",
    ]
    soak = next((r for r in results if r["fault"] == "soak"), None)
    if soak and soak.get("rss_growth"):
        text += [
            "Memory is judged for the TOM's processes (`readstreams`, the worker, beat): each may grow at most 5% "
            "after the warm-up. Redis and the embedded broker hold what is queued in them (the Celery backlog; "
            "every message, Tansu keeps them in memory) and grow with it by design; `postgres` is the postmaster "
            "only. Growth after warm-up: " + ", ".join(f"{k} {v:+.1%}" for k, v in soak["rss_growth"].items()) + ".",
            "",
        ]
    if plot:
        text += ["## Soak", "", f"![RSS of every process over the soak]({plot})", ""]
    path.write_text("\n".join(text))
