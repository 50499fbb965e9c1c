"""The deployment files hang together: compose.yaml and the Dockerfile, checked by parsing (no
Docker engine needed)."""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

Services = dict[str, dict[str, Any]]
ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("ingest", "process", "gateway")
DATA_STORES = ("kafka", "timescaledb", "redis")
# Ports the infrastructure images listen on inside the compose network.
INFRA_PORTS = {
    "kafka": {9092, 9093},
    "timescaledb": {5432},
    "redis": {6379},
    "jaeger": {4317, 4318, 14269, 16686},
    "prometheus": {9090},
    "grafana": {3000},
}
DATA_DIRS = {"kafka": "/var/lib/kafka/data", "timescaledb": "/var/lib/postgresql/data"}
HOST_PORT = re.compile(r"([A-Za-z][\w.-]*):(\d+)")
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def services() -> Services:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return {name: interpolate(spec) for name, spec in compose["services"].items()}


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` with every variable unset, so the defaults are checked."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    return value


def environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(spec: dict[str, Any]) -> dict[str, str]:
    """Dependency -> condition, for both the list and the mapping form."""
    deps = spec.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (dep or {}).get("condition", "service_started") for name, dep in deps.items()}


def endpoints(value: str) -> list[tuple[str, int]]:
    """The host:port pairs in an env value: URLs, `host:port` lists, `id@host:port` voters."""
    found = []
    for item in (part.strip() for part in value.split(",")):
        if "://" in item:
            url = urlsplit(item)
            if url.hostname and url.port:
                found.append((url.hostname, url.port))
        elif match := HOST_PORT.fullmatch(item.rpartition("@")[2]):
            found.append((match[1], int(match[2])))
    return found


def listen_ports(name: str, spec: dict[str, Any]) -> set[int]:
    if name in INFRA_PORTS:
        return INFRA_PORTS[name]
    env = environment(spec)
    ports = {int(env["TICKPIPE_METRICS_PORT"])} if "TICKPIPE_METRICS_PORT" in env else set()
    if spec.get("command", [None])[0] in ("gateway", "run"):
        ports.add(int(env.get("TICKPIPE_HTTP_PORT", "8000")))
    return ports


def published_ports(spec: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in spec.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["published"]))
        else:
            ports.add(int(str(entry).split("/")[0].split(":")[-2]))
    return ports


def is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rpartition("/")[2]
    tag = name.partition(":")[2]
    return bool(tag) and tag != "latest"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions (keyword, arguments); continuations joined, ARGs applied."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    logical = "\n".join(lines).replace("\\\n", " ")
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in filter(None, (raw.strip() for raw in logical.splitlines())):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], ""), rest).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return stages


def test_every_image_is_pinned_or_built_from_the_dockerfile(services: Services) -> None:
    """Each service runs a pinned image (a tag other than latest, or a digest) or builds ours."""
    for name, spec in services.items():
        if "build" in spec:
            build = spec["build"]
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (ROOT / context / (dockerfile or "Dockerfile")).resolve() == ROOT / "Dockerfile"
            assert "image" not in spec or is_pinned(spec["image"]), name
        else:
            assert is_pinned(spec["image"]), f"{name}: {spec['image']} is not pinned"


def test_every_env_endpoint_names_a_service_port(services: Services) -> None:
    """Every host:port in an environment variable is a service and a port it listens on."""
    checked = 0
    for name, spec in services.items():
        for variable, value in environment(spec).items():
            for host, port in endpoints(value):
                assert host in services, f"{name} {variable}: no service {host!r}"
                assert port in listen_ports(host, services[host]), f"{name} {variable}: {port}"
                checked += 1
    assert checked >= 10


def test_services_depend_on_what_their_environment_names(services: Services) -> None:
    """A service waits for every service it talks to; for a data store, until it is healthy."""
    for name, spec in services.items():
        deps = depends_on(spec)
        for value in environment(spec).values():
            for host, _ in endpoints(value):
                if host == name:
                    continue
                assert host in deps, f"{name} talks to {host} but does not depend on it"
                if host in DATA_STORES:
                    assert deps[host] == "service_healthy", f"{name} -> {host}"
                    assert "healthcheck" in services[host]


def test_depends_on_forms_a_dag_of_known_services(services: Services) -> None:
    """depends_on names existing services and has no cycle."""
    graph = {name: set(depends_on(spec)) for name, spec in services.items()}
    for name, deps in graph.items():
        assert deps <= services.keys(), name
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert order.index("migrate") < min(order.index(app) for app in APP_SERVICES)


def test_app_services_wait_for_migrate_to_succeed(services: Services) -> None:
    """ingest, process and gateway start only after `tickpipe migrate` exited with 0."""
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"].get("restart") == "no"
    assert depends_on(services["migrate"])["timescaledb"] == "service_healthy"
    for app in APP_SERVICES:
        assert depends_on(services[app])["migrate"] == "service_completed_successfully", app
        assert services[app]["command"] == [app]


def test_gateway_and_jaeger_publish_their_ports(services: Services) -> None:
    """The gateway publishes 8000 and Jaeger its UI on 16686."""
    assert 8000 in published_ports(services["gateway"])
    assert 16686 in published_ports(services["jaeger"])


def test_long_running_services_have_healthchecks_and_restart(
    services: Services, stages: list[Stage]
) -> None:
    """Every service but migrate restarts unless stopped and has a healthcheck (ours: the
    Dockerfile's, probing the port TICKPIPE_HEALTH_PORT names, one the service listens on)."""
    assert stages[-1].all("HEALTHCHECK")
    for name, spec in services.items():
        if name == "migrate":
            continue
        assert spec.get("restart") == "unless-stopped", name
        if "build" in spec:
            assert not spec.get("healthcheck", {}).get("disable"), name
            health_port = int(environment(spec)["TICKPIPE_HEALTH_PORT"])
            assert health_port in listen_ports(name, spec), name
        else:
            assert spec["healthcheck"]["test"], name


def test_app_services_are_traced_under_their_own_names(services: Services) -> None:
    """Each app service exports traces to Jaeger's OTLP endpoint under its own service name."""
    names = set()
    for app in APP_SERVICES:
        env = environment(services[app])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        names.add(env["OTEL_SERVICE_NAME"])
    assert len(names) == len(APP_SERVICES)
    assert environment(services["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"


def test_stateful_services_keep_data_in_named_volumes() -> None:
    """Kafka and TimescaleDB keep their data in volumes declared at the top level."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, path in DATA_DIRS.items():
        mounts = dict(m.split(":")[::-1] for m in compose["services"][name]["volumes"])
        assert mounts[path] in compose["volumes"], name


def test_dockerfile_builds_in_one_stage_and_runs_in_another(stages: list[Stage]) -> None:
    """Multi-stage: a named stage builds the wheel, the final one copies only from it."""
    assert len(stages) >= 2
    build, final = stages[0], stages[-1]
    assert build.name
    assert any(run.startswith("pip wheel") for run in build.all("RUN"))
    copies = [c for c in final.all("COPY") if "--from=" in c]
    assert copies
    for copy in copies:
        assert re.search(r"--from=(\S+)", copy)[1] == build.name  # type: ignore[index]
    for stage in stages:
        assert is_pinned(stage.base) or stage.base in {s.name for s in stages}, stage.base


def test_final_stage_runs_tickpipe_as_a_non_root_user(stages: list[Stage]) -> None:
    """The runtime stage drops root, enters through `tickpipe` and health-checks /healthz."""
    final = stages[-1]
    users = final.all("USER")
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert final.all("ENTRYPOINT")[-1] == '["tickpipe"]'
    healthcheck = final.all("HEALTHCHECK")[-1]
    assert "/healthz" in healthcheck
    assert "TICKPIPE_HEALTH_PORT" in healthcheck
    assert "curl" not in healthcheck
    assert any("[otlp]" in run for run in final.all("RUN"))


def test_dockerignore_keeps_the_context_to_the_sources() -> None:
    """The build context is an allow-list: no virtualenv, git history or local databases."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert {"pyproject.toml", "README.md", "src"} <= allowed


REQUIRED = re.compile(r"\$\{(\w+):\?([^}]+)\}")
SECRETS_DIR = "/run/secrets/"


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_refuses_to_start_without_the_password_files() -> None:
    """Each secret's file comes from a required variable (`${VAR:?message}`): with it unset,
    compose stops with the message; there is no default password to fall back on."""
    secrets = raw_compose()["secrets"]
    assert {"postgres_password", "redis_password"} <= secrets.keys()
    for name, spec in secrets.items():
        match = REQUIRED.fullmatch(spec["file"])
        assert match, f"secret {name}: {spec['file']!r} is not a required variable"
        assert "README" in match[2]  # the message says where to read how


def test_no_password_is_written_in_compose_or_defaulted() -> None:
    """No PASSWORD variable holds a value or a default, and no URL carries a password."""
    text = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"PASSWORD:-", text)
    for name, spec in raw_compose()["services"].items():
        for variable, value in environment(spec).items():
            if "PASSWORD" in variable:
                assert variable.endswith("_FILE"), f"{name} {variable}"
            if "://" in value:
                assert urlsplit(value).password is None, f"{name} {variable}"


def mounted_secret(spec: dict[str, Any], path: str) -> str:
    """The secret that `path` (/run/secrets/NAME) names; the service must mount it."""
    assert path.startswith(SECRETS_DIR), path
    secret = path.removeprefix(SECRETS_DIR)
    assert secret in (spec.get("secrets") or []), f"{secret} is not mounted"
    return secret


def test_postgres_and_tickpipe_read_one_password_secret(services: Services) -> None:
    """TimescaleDB takes POSTGRES_PASSWORD_FILE and every service that talks to it
    TICKPIPE_DATABASE_PASSWORD_FILE, from the same secret."""
    db = environment(services["timescaledb"])
    assert mounted_secret(services["timescaledb"], db["POSTGRES_PASSWORD_FILE"]) == (
        "postgres_password"
    )
    users = [
        name for name, spec in services.items() if "TICKPIPE_DATABASE_URL" in environment(spec)
    ]
    assert set(users) == {"migrate", "process", "gateway"}
    for name in users:
        env = environment(services[name])
        path = env["TICKPIPE_DATABASE_PASSWORD_FILE"]
        assert mounted_secret(services[name], path) == "postgres_password", name


def test_redis_requires_the_password_its_clients_read(services: Services) -> None:
    """Redis is started with requirepass from the secret (not on its command line), its health
    check authenticates, and every client reads TICKPIPE_REDIS_PASSWORD_FILE from that secret."""
    redis = services["redis"]
    script = "\n".join(redis["entrypoint"])
    assert "requirepass" in script
    assert f"{SECRETS_DIR}redis_password" in script
    assert "redis-server /tmp/redis.conf" in script  # the password is in the file, not argv
    assert "exec docker-entrypoint.sh redis-server" in script  # still drops to the redis user
    mounted_secret(redis, f"{SECRETS_DIR}redis_password")
    check = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH" in check
    assert "grep -q PONG" in check  # NOAUTH exits 0 too
    clients = [name for name, spec in services.items() if "TICKPIPE_REDIS_URL" in environment(spec)]
    assert set(clients) == {"process", "gateway"}
    for name in clients:
        path = environment(services[name])["TICKPIPE_REDIS_PASSWORD_FILE"]
        assert mounted_secret(services[name], path) == "redis_password", name


def test_jaeger_ui_and_otlp_are_published_on_loopback_only(services: Services) -> None:
    """Traces name hosts and symbols: Jaeger's ports are bound to 127.0.0.1."""
    for entry in services["jaeger"]["ports"]:
        assert str(entry).startswith("127.0.0.1:"), entry


def test_every_tickpipe_variable_in_compose_is_a_setting(services: Services) -> None:
    """No TICKPIPE_* name in compose is a typo: tickpipe would warn about it at start."""
    from tickpipe.config import Settings

    for name, spec in services.items():
        assert Settings.unknown_variables(environment(spec)) == [], name


def published_entries(spec: dict[str, Any]) -> list[str]:
    return [str(entry) for entry in spec.get("ports", [])]


def mounts(spec: dict[str, Any]) -> dict[str, Path | str]:
    """Container path -> host path (bind mounts, resolved) or volume name."""
    found: dict[str, Path | str] = {}
    for entry in spec.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        found[target] = (ROOT / source).resolve() if source.startswith(".") else source
    return found


def test_every_published_port_is_on_loopback(services: Services) -> None:
    """The dashboard, Grafana, Prometheus, Jaeger and the probe ports: 127.0.0.1 only."""
    published = 0
    for name, spec in services.items():
        for entry in published_entries(spec):
            assert entry.startswith("127.0.0.1:"), f"{name}: {entry}"
            published += 1
    assert published >= 8


def test_probe_ports_of_every_app_service_are_published(services: Services) -> None:
    """ingest, process and gateway publish their TICKPIPE_METRICS_PORT, and the gateway's
    /metrics is not on its public port."""
    for app in APP_SERVICES:
        port = int(environment(services[app])["TICKPIPE_METRICS_PORT"])
        assert port in published_ports(services[app]), app
    assert int(environment(services["gateway"])["TICKPIPE_METRICS_PORT"]) != 8000


def test_prometheus_scrapes_every_app_service_where_it_serves_metrics(services: Services) -> None:
    """Each scrape target is a service and its TICKPIPE_METRICS_PORT; every app is scraped."""
    prometheus = services["prometheus"]
    config_path = mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    assert config_path == ROOT / "deploy/prometheus/prometheus.yml"
    config = yaml.safe_load(Path(config_path).read_text())
    scraped = set()
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.split(":")
                assert int(environment(services[host])["TICKPIPE_METRICS_PORT"]) == int(port)
                assert job.get("metrics_path", "/metrics") == "/metrics"
                scraped.add(host)
    assert scraped == set(APP_SERVICES)


def test_prometheus_loads_the_alert_rules_it_mounts(services: Services) -> None:
    """rule_files names the container path where deploy/prometheus/alerts.yml is mounted."""
    prometheus = services["prometheus"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert mounts(prometheus)[rule_file] == ROOT / "deploy/prometheus/alerts.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert mounts(prometheus)["/prometheus"] in raw_compose()["volumes"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(services: Services) -> None:
    """Grafana mounts the provisioning (datasource -> the prometheus service's port) and the
    dashboard directory that its dashboard provider reads."""
    grafana = services["grafana"]
    mounted = mounts(grafana)
    provisioning = Path(mounted["/etc/grafana/provisioning"])
    assert provisioning == ROOT / "deploy/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (url,) = [source["url"] for source in datasources["datasources"]]
    ((host, port),) = endpoints(url)
    assert host == "prometheus"
    assert port in listen_ports(host, services[host])
    assert depends_on(grafana)["prometheus"] == "service_healthy"
    providers = yaml.safe_load((provisioning / "dashboards/tickpipe.yml").read_text())
    (path,) = [provider["options"]["path"] for provider in providers["providers"]]
    assert mounted[path] == ROOT / "deploy/grafana/dashboards"
    assert (Path(mounted[path]) / "tickpipe.json").is_file()
    assert mounted["/var/lib/grafana"] in raw_compose()["volumes"]


def test_grafana_admin_password_is_a_secret(services: Services) -> None:
    """Grafana's admin password comes from a secret file; anonymous users may only view."""
    env = environment(services["grafana"])
    assert mounted_secret(services["grafana"], env["GF_SECURITY_ADMIN_PASSWORD__FILE"]) == (
        "grafana_password"
    )
    assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer") == "Viewer"
