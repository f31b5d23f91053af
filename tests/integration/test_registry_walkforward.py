"""A walk-forward job's configuration in the registry, against the real PostgreSQL.

Born DISCOVERY or CANDIDATE as any job's; a CANDIDATE whose every gate holds moves on to PAPER
at once (history entry 2, actor `registry`, one more ConfigPromoted through the outbox); the
gates (value, threshold, verdict) and the report are kept with the configuration. A plain
job's configuration has no gates and never reaches PAPER by itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from tradepulse.common.contracts.registry import ConfigPromoted, GetConfig, ListConfigs
from tradepulse.common.contracts.subjects import Names
from tradepulse.common.contracts.training import (
    BarSpan,
    Degradation,
    FinalOptimization,
    JobCompleted,
    OutOfSample,
    PboReport,
    SelectedTrial,
    ValidationReport,
    WalkForwardReport,
)
from tradepulse.registry.handlers import config_id_for, get_config, list_configs, record_job

from .test_registry import job_completed, registry_deps
from .test_registry_status import history, outbox

pytestmark = pytest.mark.integration

SPAN = BarSpan(first_bar=300, last_bar=5999, bars=5700, first_ms=0, last_ms=1)


def validation(dsr: float | None, pbo: float) -> ValidationReport:
    return ValidationReport(
        n_trials=40,
        sharpe_variance=0.01,
        expected_max_sharpe=1.2,
        expected_max_sharpe_per_bar=0.004,
        selected=SelectedTrial(trial=27, sharpe_per_bar=0.01, returns=999, skew=0.1, kurtosis=3.0),
        psr=0.99,
        dsr=dsr,
        pbo=PboReport(
            blocks=16,
            sets=12870,
            pbo=pbo,
            prob_oos_loss=0.1,
            degradation=Degradation(slope=0.5, intercept=0.0, r2=0.3),
            logit_quantiles=dict.fromkeys(("5", "25", "50", "75", "95"), 0.0),
            logit_histogram=[0] * 12 + [12870] + [0] * 11,
        ),
    )


def walk_forward_job(
    job_id: str, *, trades: int = 45, oos_trades: int = 31, wfe: float | None = 0.75, **kw: Any
) -> JobCompleted:
    report_validation = validation(kw.get("dsr", 0.97), kw.get("pbo", 0.2))
    report = WalkForwardReport(
        folds=5,
        mode="rolling",
        is_oos_ratio=4,
        train_bars=1900,
        test_bars=633,
        fold_results=[],
        final=FinalOptimization(fold=5, span=SPAN, best_trial=227, validation=report_validation),
        oos=OutOfSample(
            span=SPAN,
            metrics={"total_trades": oos_trades, "sharpe_ratio": 1.25, "net_profit_pct": 3.0},
            psr=0.96,
            fingerprint="f" * 64,
        ),
        wfe=wfe,
        dispersion={"key_level_lookback": 0.1},
    )
    event = job_completed(job_id, trades=trades, sharpe=1.0, net_profit=10.0)
    return event.model_copy(update={"validation": report_validation, "walk_forward": report})


async def sent(subject: str, message: ConfigPromoted) -> object:
    return None


async def test_a_walk_forward_candidate_whose_gates_all_hold_goes_to_paper(database: str) -> None:
    async with registry_deps(database, Names("twf"), sent) as deps:
        event = walk_forward_job("wf-pass")
        assert await record_job(event, deps)
        assert not await record_job(event, deps), "a redelivery writes nothing"
        config_id = config_id_for("wf-pass")
        config = (await get_config(GetConfig(config_id=config_id), deps)).config
        assert config is not None
        assert config.status == "PAPER"
        assert config.walk_forward == event.walk_forward
        assert config.gates is not None
        assert [(g.name, g.value, g.comparison, g.threshold, g.passed) for g in config.gates] == [
            ("oos_total_trades", 31, ">=", 30.0, True),
            ("oos_sharpe_ratio", 1.25, ">", 0.0, True),
            ("oos_psr", 0.96, ">=", 0.95, True),
            ("wfe", 0.75, ">=", 0.5, True),
            ("pbo", 0.2, "<=", 0.5, True),
            ("dsr", 0.97, ">=", 0.95, True),
        ]
        rows = await history(database, config_id)
        assert [(seq, a, b, actor) for seq, a, b, _, actor in rows] == [
            (1, None, "CANDIDATE", "registry"),
            (2, "CANDIDATE", "PAPER", "registry"),
        ]
        assert rows[1][3].startswith("every walk-forward gate holds: oos_total_trades 31 >= 30")
        events = await outbox(database, config_id)
        assert [(e.message_id, e.from_status, e.to_status) for e in events] == [
            (f"{config_id}.1", None, "CANDIDATE"),
            (f"{config_id}.2", "CANDIDATE", "PAPER"),
        ]
        papers = await list_configs(ListConfigs(status="PAPER"), deps)
        assert [c.config_id for c in papers.items] == [config_id]


@pytest.mark.parametrize(
    ("fields", "failed"),
    [
        pytest.param({"oos_trades": 29}, "oos_total_trades", id="too-few-oos-trades"),
        pytest.param({"wfe": None}, "wfe", id="null-wfe-fails"),
        pytest.param({"dsr": None}, "dsr", id="null-dsr-fails"),
        pytest.param({"pbo": 0.6}, "pbo", id="overfit"),
    ],
)
async def test_a_failed_gate_leaves_a_candidate_where_it_is_with_its_verdicts(
    database: str, fields: dict[str, Any], failed: str
) -> None:
    async with registry_deps(database, Names("twf"), sent) as deps:
        assert await record_job(walk_forward_job("wf-fail", **fields), deps)
        config = (await get_config(GetConfig(job_id="wf-fail"), deps)).config
        assert config is not None
        assert config.status == "CANDIDATE"
        assert config.gates is not None
        assert [g.name for g in config.gates if not g.passed] == [failed]
        assert len(await outbox(database, config.config_id)) == 1


async def test_a_discovery_stays_discovery_with_its_gates_and_a_plain_job_has_none(
    database: str,
) -> None:
    async with registry_deps(database, Names("twf"), sent) as deps:
        assert await record_job(walk_forward_job("wf-few", trades=5), deps)
        assert await record_job(job_completed("plain", trades=45, sharpe=2.0, net_profit=9.0), deps)
        few = (await get_config(GetConfig(job_id="wf-few"), deps)).config
        plain = (await get_config(GetConfig(job_id="plain"), deps)).config
        assert few is not None
        assert plain is not None
        assert few.status == "DISCOVERY"
        assert few.gates is not None
        assert all(g.passed for g in few.gates), "every gate holds, yet DISCOVERY stays"
        assert (plain.status, plain.gates, plain.walk_forward) == ("CANDIDATE", None, None)
        assert (await list_configs(ListConfigs(status="PAPER"), deps)).total == 0
