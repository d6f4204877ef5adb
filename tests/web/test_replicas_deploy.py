"""deploy/: the Kubernetes manifests validate strictly against Kubernetes' own schemas (shipped by
kubernetes-validate, so no network), the Prometheus configuration against the schema beside this
file; and the files agree with each other and with the programs they start: every command parses
with `codellama serve`'s and smg's own parsers, the gateway reaches every replica's Service, and
Prometheus keeps exactly the pods the manifests label."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from inference.cli import build_parser
from web.commands.serve import where

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.37"


def _manifests() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def _of(kind: str, component: str) -> list[dict]:
    return [d for d in _manifests()
            if d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/component") == component]


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_every_manifest_validates_strictly_against_the_kubernetes_schemas():
    docs = _manifests()
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "Secret", "PersistentVolumeClaim"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    misspelt = copy.deepcopy(_of("Deployment", "replica")[0])
    _container(misspelt)["readinesProbe"] = _container(misspelt).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, K8S_VERSION, strict=True)


def test_replicas_are_probed_on_health_and_each_has_a_service_the_gateway_names():
    replicas = _of("Deployment", "replica")
    services = _of("Service", "replica")
    assert len(replicas) == len(services) >= 2
    urls = set()
    for deployment in replicas:
        container = _container(deployment)
        command = container["command"]
        assert command[:2] == ["codellama", "serve"]
        args = build_parser().parse_args(command[1:])  # every flag exists
        (port,) = [p for p in container["ports"] if p["name"] == "http"]
        assert (where(args)[2], port["containerPort"]) == (8000, 8000)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (service,) = [s for s in services if s["spec"]["selector"].items() <= labels.items()]
        (service_port,) = service["spec"]["ports"]
        assert service_port["targetPort"] == "http"
        urls.add(f"http://{service['metadata']['name']}:{service_port['port']}")
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > args.shutdown_grace  # Kubernetes waits for the streams in flight
    from smg.launch_router import parse_router_args

    (gateway,) = _of("Deployment", "gateway")
    command = _container(gateway)["command"]
    assert command[:2] == ["smg", "launch"]
    router = parse_router_args(command[2:])  # every flag exists in the pinned gateway
    assert set(router.worker_urls) == urls and router.policy == "cache_aware"
    (gateway_service,) = _of("Service", "gateway")
    assert gateway_service["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()


def test_the_gateway_and_the_replicas_share_one_key_from_the_secret():
    (secret,) = [d for d in _manifests() if d["kind"] == "Secret"]
    for deployment in [*_of("Deployment", "replica"), *_of("Deployment", "gateway")]:
        container = _container(deployment)
        assert "$(API_KEY)" in container["command"]
        (env,) = container["env"]
        assert env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "api-key"}


def test_the_prometheus_configuration_validates_and_keeps_the_labelled_pods():
    schema = json.loads((Path(__file__).parent / "prometheus_config.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    validator.validate(config)
    misplaced = copy.deepcopy(config)
    misplaced["scrape_configs"][0]["target"] = misplaced["scrape_configs"][0].pop("kubernetes_sd_configs")
    assert not validator.is_valid(misplaced)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {"replica": "http", "gateway": "metrics"}  # each pod's port that serves /metrics

    def kept(job: dict, component: str, port_name: str) -> bool:
        """Whether the job's keep rules keep that pod's port, as Prometheus's relabelling would."""
        (deployment, *_) = _of("Deployment", component)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in labels.items()}
        meta["__meta_kubernetes_pod_container_port_name"] = port_name
        return all(re.fullmatch(rule["regex"], ";".join(meta.get(name, "") for name in rule["source_labels"]))
                   for rule in job["relabel_configs"] if rule.get("action") == "keep")

    for job, component in (("codellama-replicas", "replica"), ("codellama-gateway", "gateway")):
        assert any(p["name"] == targets[component] for p in _container(_of("Deployment", component)[0])["ports"])
        for other, port_name in targets.items():
            for port in set(targets.values()):
                assert kept(jobs[job], other, port) == (other == component and port == port_name), (job, other, port)
