"""How the client commands show jobs, configurations and live progress in a terminal."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

# The figures a reader looks at first; `--json` gives every metric.
KEY_METRICS = (
    "sharpe_ratio",
    "net_profit",
    "total_trades",
    "win_rate",
    "profit_factor",
    "max_drawdown_pct",
    "sortino_ratio",
    "calmar_ratio",
)


def print_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=out or sys.stdout, flush=True)


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(rows: Sequence[Sequence[str]], header: Sequence[str], out: TextIO) -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in (header, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


def page(body: Any, key: str) -> tuple[list[dict[str, Any]], int | None]:
    """The records of a paged answer (`{"total", "limit", "offset", key: [...]}`), its total."""
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        return [], None
    total = body.get("total")
    return [x for x in body[key] if isinstance(x, dict)], total if isinstance(total, int) else None


def listing(
    body: Any,
    key: str,
    rows: Callable[[Iterable[Mapping[str, Any]]], list[list[str]]],
    header: Sequence[str],
    noun: str,
    as_json: bool,
    out: TextIO | None = None,
) -> None:
    """A paged answer as the list commands print it: JSON, or a table with its total."""
    out = out or sys.stdout
    if as_json:
        print_json(body, out)
        return
    records, total = page(body, key)
    if not records:
        print(f"no {noun}", file=out)
        return
    table(rows(records), header, out)
    if total is not None and total > len(records):
        print(f"({len(records)} of {total}; --offset/--limit for more)", file=out)


def market(record: Mapping[str, Any]) -> str:
    """`binance BTC/USDT 5m`: the dataset of a job or a configuration."""
    return " ".join(str(record.get(k) or "-") for k in ("exchange", "symbol", "timeframe"))


def best_of(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job's best trial so far as {value, trial, params, metrics} (the gateway's `best`)."""
    best = job.get("best")
    return dict(best) if isinstance(best, Mapping) else {}


def job_rows(jobs: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for job in jobs:
        rows.append(
            [
                str(job.get("job_id", "?")),
                str(job.get("status", "?")),
                f"{float(job.get('progress') or 0):.1f}%",
                f"{job.get('trials_done', '-')}/{job.get('n_iterations') or '-'}",
                market(job),
                str(job.get("optimizer") or "-"),
                number(best_of(job).get("value")),
                str(job.get("config_id") or "-"),
                str(job.get("created_at") or "-")[:19],
            ]
        )
    return rows


JOB_HEADER = (
    "job",
    "status",
    "progress",
    "trials",
    "dataset",
    "optimizer",
    "best",
    "config",
    "created",
)


def config_rows(configs: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for config in configs:
        metrics = config.get("metrics") or {}
        rows.append(
            [
                str(config.get("config_id", "?")),
                str(config.get("status", "?")),
                str(config.get("strategy") or "-"),
                market(config),
                number(metrics.get("sharpe_ratio")),
                number(metrics.get("total_trades")),
                number(metrics.get("net_profit"), 2),
                str(config.get("created_at") or "-")[:19],
            ]
        )
    return rows


CONFIG_HEADER = (
    "config",
    "status",
    "strategy",
    "dataset",
    "sharpe",
    "trades",
    "net profit",
    "created",
)


def param(value: Any) -> str:
    """A parameter as the optimizer chose it, to six significant digits (0.000338 stays)."""
    return f"{value:.6g}" if isinstance(value, float) else number(value)


def block(title: str, values: Mapping[str, Any], out: TextIO, *, params: bool = False) -> None:
    print(title, file=out)
    if not values:
        print("  (none)", file=out)
        return
    width = max(len(k) for k in values) + 2
    for key, value in values.items():
        text = param(value) if params else number(value)
        print(f"  {key:<{width}}{text:>16}", file=out)


def key_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    chosen = {k: metrics[k] for k in KEY_METRICS if k in metrics}
    return chosen or dict(metrics)


def job_details(job: Mapping[str, Any], out: TextIO) -> None:
    window = (
        f"last {number(job.get('lookback_candles'))} candles"
        if job.get("lookback_candles") is not None
        else f"{job.get('start') or '-'} to {job.get('end') or 'the last candle'}"
    )
    print(f"job        {job.get('job_id')}", file=out)
    print(f"status     {job.get('status')}", file=out)
    print(
        f"progress   {float(job.get('progress') or 0):.1f}%  "
        f"({job.get('trials_done', '-')} of {job.get('n_iterations') or '-'} trials)",
        file=out,
    )
    print(
        f"request    {job.get('strategy') or '-'} on {market(job)}, {window}, regime "
        f"{job.get('regime') or '-'}, {job.get('optimizer') or '-'}, seed {job.get('seed')}, "
        f"objective {job.get('objective') or '-'}",
        file=out,
    )
    for key in ("created_at", "started_at", "finished_at"):
        if job.get(key):
            print(f"{key.removesuffix('_at'):<11}{job[key]}", file=out)
    if job.get("duration_s") is not None:
        print(f"duration   {job['duration_s']} s", file=out)
    if job.get("error"):
        print(f"error      {job['error']}", file=out)
    best = best_of(job)
    if best:
        print(f"best       {number(best.get('value'))} (trial {best.get('trial')})", file=out)
    if job.get("config_id"):
        print(f"config     {job['config_id']}", file=out)
    if best.get("params"):
        block("best params", best["params"], out, params=True)
    if best.get("metrics"):
        block("best metrics", key_metrics(best["metrics"]), out)
    validation_block(job.get("validation"), best.get("metrics"), out)
    report = job.get("walk_forward")
    if isinstance(report, Mapping):
        # The gates live with the configuration: `tradepulse configs show` has them.
        walk_forward_report(report, None, out)


def best_configuration(
    job: Mapping[str, Any], config: Mapping[str, Any] | None, out: TextIO
) -> None:
    """The outcome of a finished training job: its configuration, or the job's best."""
    best = best_of(job)
    config = config or {}
    params = config.get("params") or best.get("params") or {}
    metrics = config.get("metrics") or best.get("metrics") or {}
    config_id = config.get("config_id") or job.get("config_id")
    status = config.get("status")
    print(
        f"best configuration: {config_id or '(not registered yet)'}"
        + (f" ({status})" if status else "")
        + f", {job.get('objective') or 'objective'} {number(best.get('value'))}"
        + f" at trial {best.get('trial')}",
        file=out,
    )
    block("params", params, out, params=True)
    block("metrics", key_metrics(metrics), out)
    if config.get("fingerprint"):
        print(f"fingerprint  {config['fingerprint']}", file=out)
    validation_block(config.get("validation") or job.get("validation"), metrics, out)
    out.flush()


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _figure(value: Any, digits: int) -> str | None:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else None


def validation_lines(validation: Any, sharpe: Any = None) -> list[str]:
    """The overfitting statistics in plain words: one line per figure (spec validation.md
    sections 1-2). `sharpe` is the selected trial's annualized Sharpe (its metrics'); without
    it, its per-bar Sharpe is scaled as the expected maximum is (by sqrt of periods a year)."""
    if not isinstance(validation, Mapping):
        return []
    n = validation.get("n_trials")
    lines = []
    selected = validation.get("selected")
    selected = selected if isinstance(selected, Mapping) else {}
    emax = validation.get("expected_max_sharpe")
    emax_bar = validation.get("expected_max_sharpe_per_bar")
    per_bar = selected.get("sharpe_per_bar")
    dsr = _figure(validation.get("dsr"), 2)
    luck = _figure(emax, 1)
    if dsr is not None and luck is not None:
        own = ""
        if isinstance(sharpe, int | float):
            own = f"; this one has {sharpe:.1f}"
        elif (
            isinstance(per_bar, int | float)
            and isinstance(emax, int | float)
            and isinstance(emax_bar, int | float)
            and emax_bar
        ):
            own = f"; this one has {per_bar * emax / emax_bar:.1f}"
        lines.append(
            f"the best of {_count(n)} skill-less tries would show a Sharpe of {luck} by luck "
            f"alone{own} → deflated Sharpe {dsr} (probability that the edge is real)"
        )
    else:
        lines.append(
            f"deflated Sharpe: not available for these {_count(n)} tries (it needs a best trial "
            "whose returns vary)"
        )
    psr = _figure(validation.get("psr"), 2)
    if psr is not None:
        lines.append(
            f"ignoring the search, the probability that this Sharpe beats zero is {psr} (PSR, "
            f"from {_count(selected.get('returns'))} returns)"
        )
    pbo = validation.get("pbo")
    if isinstance(pbo, Mapping) and isinstance(pbo.get("pbo"), int | float):
        share = float(pbo["pbo"])
        lines.append(
            f"in {share * 100:.0f} % of the {_count(pbo.get('sets'))} splits the in-sample "
            f"winner ranked below the median out of sample (PBO {share:.2f})"
        )
        loss = pbo.get("prob_oos_loss")
        if isinstance(loss, int | float):
            lines.append(f"and in {float(loss) * 100:.0f} % of them it lost money out of sample")
    else:
        lines.append(
            "PBO: not available (it needs at least 2 evaluated tries and 2 returns per block)"
        )
    return lines


def validation_block(validation: Any, metrics: Any, out: TextIO) -> None:
    sharpe = metrics.get("sharpe_ratio") if isinstance(metrics, Mapping) else None
    lines = validation_lines(validation, sharpe)
    if lines:
        print("overfitting", file=out)
        for line in lines:
            print(f"  {line}", file=out)


ENSEMBLE_HEADER = ("seed", "job", "status", "best", "trial")


def ensemble_rows(jobs: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            str(j.get("seed", "?")),
            str(j.get("job_id", "?")),
            str(j.get("status", "?")),
            number(j.get("best_value")),
            number(j.get("best_trial")),
        ]
        for j in jobs
    ]


def convergence_line(convergence: Mapping[str, Any]) -> str:
    """Whether the seeds agree, in plain words (spec validation.md section 4)."""
    limit = float(convergence.get("max_dispersion") or 0)
    spread = [v for v in (convergence.get("dispersion") or {}).values() if v is not None]
    completed = convergence.get("completed")
    if len(spread) < len(convergence.get("dispersion") or {}) or not spread:
        return (
            f"convergence cannot be judged from {_count(completed)} completed seed(s): "
            "it needs at least 2"
        )
    widest = max(spread)
    if convergence.get("converged"):
        return (
            f"the seeds' best parameters stay within {widest * 100:.0f} % of their ranges "
            f"(limit {limit * 100:.0f} %): they agree on one region, a sign of a real optimum"
        )
    return (
        f"the seeds' best parameters scatter by up to {widest * 100:.0f} % of their ranges "
        f"(limit {limit * 100:.0f} %): the search is likely fitting noise"
    )


def ensemble_report(view: Mapping[str, Any], out: TextIO) -> None:
    jobs = [j for j in view.get("jobs") or [] if isinstance(j, Mapping)]
    print(
        f"ensemble {view.get('ensemble_id')}: {_count(view.get('size'))} seeds, "
        f"{view.get('status')}",
        file=out,
    )
    table(ensemble_rows(jobs), ENSEMBLE_HEADER, out)
    convergence = view.get("convergence")
    if not isinstance(convergence, Mapping):
        out.flush()
        return
    print(convergence_line(convergence), file=out)
    block(
        f"dispersion over {_count(convergence.get('completed'))} completed seeds "
        "(std / range width)",
        convergence.get("dispersion") or {},
        out,
    )
    objective = convergence.get("objective") or {}
    print(
        "objective  "
        + ", ".join(f"{k} {number(objective.get(k))}" for k in ("mean", "std", "min", "max")),
        file=out,
    )
    out.flush()


class ProgressBar:
    """A job's progress: one redrawn line on a terminal; elsewhere (logs, pipes) a line per
    tenth of the way and per change of status, so a log stays short."""

    def __init__(self, total: int | None, out: TextIO | None = None, width: int = 30) -> None:
        self.out = out or sys.stderr
        self.total = total
        self.width = width
        self.tty = self.out.isatty()
        self._last_draw = 0.0
        self._last_step = -1
        self._last_status: str | None = None
        self._line = ""

    def update(self, snapshot: Mapping[str, Any]) -> None:
        status = str(snapshot.get("status") or self._last_status or "queued")
        progress = snapshot.get("progress")
        if progress is None:
            return  # a best-so-far event without progress; the next progress event draws
        pct = max(0.0, min(100.0, float(progress)))
        done = snapshot.get("trials_done")
        total = snapshot.get("n_iterations") or self.total
        best = snapshot.get("best_value", best_of(snapshot).get("value"))
        filled = round(self.width * pct / 100)
        bar = "#" * filled + "." * (self.width - filled)
        trials = f"{done}/{total} trials" if done is not None and total else ""
        best_text = f"best {number(best)}" if best is not None else ""
        line = "  ".join(x for x in (f"[{bar}] {pct:5.1f}%", trials, best_text, status) if x)
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and status == self._last_status and pct < 100:
                return
            self._last_draw = now
            pad = max(0, len(self._line) - len(line))
            self.out.write("\r" + line + " " * pad)
            self.out.flush()
            self._line = line
        else:
            step = int(pct // 10)
            if step != self._last_step or status != self._last_status:
                self.out.write(line + "\n")
                self.out.flush()
                self._last_step = step
        self._last_status = status

    def close(self) -> None:
        if self.tty and self._line:
            self.out.write("\n")
            self.out.flush()
            self._line = ""


# Walk-forward jobs (validation spec sections 3 and 5) --------------------------------------


def _span(span: Any) -> str:
    if not isinstance(span, Mapping):
        return "-"
    return f"{number(span.get('first_bar'))}..{number(span.get('last_bar'))}"


def _metric(metrics: Any, name: str, digits: int = 2) -> str:
    return number(metrics.get(name), digits) if isinstance(metrics, Mapping) else "-"


def fold_rows(report: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for f in report.get("fold_results") or []:
        train, test = f.get("train_metrics"), f.get("test_metrics")
        best = f.get("best_trial")
        rows.append(
            [
                str(f.get("fold")),
                _span(f.get("train")),
                _span(f.get("test")),
                "none" if best is None else str(best),
                _metric(train, "sharpe_ratio"),
                _metric(train, "net_profit"),
                _metric(test, "sharpe_ratio"),
                _metric(test, "net_profit"),
                str(f.get("test_trades", "-")),
                number(f.get("efficiency"), 2),
            ]
        )
    return rows


def walk_forward_report(
    report: Mapping[str, Any], config: Mapping[str, Any] | None, out: TextIO
) -> None:
    """The folds (in-sample = the fold's best trial on its training span, out-of-sample = its
    test span), the stitched record, WFE, the gates with their verdicts and the status."""
    print(
        f"walk-forward: {report.get('folds')} folds, {report.get('mode')}, in-sample/"
        f"out-of-sample {report.get('is_oos_ratio')}, first training span "
        f"{number(report.get('train_bars'))} bars, test spans {number(report.get('test_bars'))}",
        file=out,
    )
    header = ["fold", "train bars", "test bars", "best", "IS sharpe", "IS net", "OOS sharpe"]
    table(fold_rows(report), [*header, "OOS net", "OOS trades", "efficiency"], out)
    final = report.get("final") or {}
    print(
        f"final optimization (fold {final.get('fold')}) on bars {_span(final.get('span'))}: "
        f"best trial {final.get('best_trial')}",
        file=out,
    )
    oos = report.get("oos") or {}
    metrics = oos.get("metrics") or {}
    print(
        f"stitched out-of-sample {_span(oos.get('span'))}: sharpe "
        f"{_metric(metrics, 'sharpe_ratio')}, net profit {_metric(metrics, 'net_profit')} "
        f"({_metric(metrics, 'net_profit_pct')} %), {number(metrics.get('total_trades'))} trades, "
        f"PSR {number(oos.get('psr'), 3)}",
        file=out,
    )
    print(f"WFE {number(report.get('wfe'), 3)}", file=out)
    dispersion = report.get("dispersion") or {}
    if dispersion:
        spread = ", ".join(f"{k} {number(v, 2)}" for k, v in dispersion.items())
        print(f"dispersion of the folds' bests: {spread}", file=out)
    gates = (config or {}).get("gates")
    if isinstance(gates, list):
        rows = [
            [
                str(g.get("name")),
                number(g.get("value"), 4) if g.get("value") is not None else "null",
                f"{g.get('comparison')} {number(g.get('threshold'), 2)}",
                "pass" if g.get("passed") else "FAIL",
            ]
            for g in gates
            if isinstance(g, Mapping)
        ]
        print("gates", file=out)
        table(rows, ["gate", "value", "needs", "verdict"], out)
    if config and config.get("status"):
        print(f"status {config['status']}", file=out)
    out.flush()


def walk_forward_verdict(config: Mapping[str, Any] | None) -> str:
    """The gates' outcome in plain words."""
    if not config or not isinstance(config.get("gates"), list):
        return "no verdict yet: the configuration has not been registered"
    failed = [g.get("name") for g in config["gates"] if not g.get("passed")]
    status = config.get("status")
    if not failed:
        if status == "PAPER":
            return "it survived out-of-sample: every gate holds and it moved to PAPER trading"
        return f"every gate holds, but it stays {status}: too few in-sample trades to judge"
    return (
        f"it did not survive out-of-sample: {', '.join(map(str, failed))} failed, so it stays "
        f"{status}"
    )
