"""Everything a request handler needs, built once per app by `create_app`."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from tradepulse.common.contracts.market import DatasetCoverage, DatasetKey
from tradepulse.common.contracts.subjects import Names
from tradepulse.gateway.auth import ApiKeys
from tradepulse.gateway.backend import Backend
from tradepulse.gateway.fanout import LiveHub
from tradepulse.gateway.metrics import GatewayMetrics
from tradepulse.gateway.settings import GatewaySettings
from tradepulse.gateway.tracking import IngestTracker, RecentJobs

MAX_CACHED_CONFIG_IDS = 50_000


@dataclass
class Gateway:
    settings: GatewaySettings
    keys: ApiKeys
    metrics: GatewayMetrics
    backend: Backend
    recent_jobs: RecentJobs
    streams: LiveHub
    ingests: IngestTracker = field(default_factory=IngestTracker)
    # A job's configuration id never changes once the registry has made it.
    config_ids: OrderedDict[str, str] = field(default_factory=OrderedDict)
    # The last coverage seen of each dataset, and when (time.monotonic()).
    coverage_cache: dict[DatasetKey, tuple[DatasetCoverage, float]] = field(default_factory=dict)

    @property
    def names(self) -> Names:
        return self.settings.names

    def remember_config_id(self, job_id: str, config_id: str) -> None:
        self.config_ids[job_id] = config_id
        while len(self.config_ids) > MAX_CACHED_CONFIG_IDS:
            self.config_ids.popitem(last=False)
