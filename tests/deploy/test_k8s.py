"""The Kubernetes manifests, offline: base and every overlay render with kustomize, validate
strictly against a pinned Kubernetes version (and the prometheus-operator CRD schemas kept
in deploy/k8s/schemas), pass checkov's policies with the skips listed in
deploy/k8s/checkov.yaml, and keep what an operator relies on: restricted containers,
required Secrets (each email gateway role only the ones it uses), the settings production
mode demands, probes of what each process serves, grace periods longer than each process's
drain, and the public surfaces on the right role."""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp.web_runner
import nats.aio.client
import pytest

from gateways.email import sender as email_sender
from gateways.email import tracking as email_tracking
from gateways.smpp import settings as smpp
from shared import production
from shared.grpc_server import ServiceRuntime

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
TOOLS = ROOT / ".venv-tools/bin"
KUBERNETES_VERSION = "1.32.0"
TARGETS = {"base": K8S / "base", "dev": K8S / "overlays/dev", "prod": K8S / "overlays/prod"}
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# Herald process -> the module its container runs. The email gateway runs as its three
# roles (gateways/email/roles.py), each its own Deployment.
PROCESSES = {"campaigns": "services.campaigns", "recipients": "services.recipients",
             "stats": "services.stats", "smpp-gateway": "gateways.smpp",
             "email-sender": "gateways.email.sender",
             "email-tracking": "gateways.email.tracking_server",
             "email-bounces": "gateways.email.bounce_server"}
AUTOSCALED = {"recipients", "stats", "email-sender", "email-tracking"}
EMAIL_ROLES = ("email-sender", "email-tracking", "email-bounces")
SQL = {"campaigns", "recipients"}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def run(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, check=False)


def tool(name: str) -> Path:
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: `make tools` installs the deployment checkers"
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("k8s-rendered")
    files = {}
    for name, folder in TARGETS.items():
        result = run("kubectl", "kustomize", folder)
        assert result.returncode == 0, f"kubectl kustomize {folder}:\n{result.stderr}"
        files[name] = out / f"{name}.yaml"
        files[name].write_text(result.stdout, encoding="utf-8")
    return files


def validate_crds(*files: Path) -> tuple[int, dict[str, Any]]:
    result = run(tool("python"), K8S / "schemas/validate_crds.py", *files)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def documents(rendered: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """Every rendered document by target; the monitoring resources validated on the way."""
    rc, out = validate_crds(*rendered.values())
    assert out["errors"] == [] and rc == 0
    return {name: out["documents"][str(path)] for name, path in rendered.items()}


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


def is_herald(container: dict[str, Any]) -> bool:
    return re.match(r"^([\w.-]+/)*herald[:@]", container["image"]) is not None


def config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return find(docs, "ConfigMap", "herald-config")["data"]


def env_of(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The container's environment: its ConfigMap values, then its own env entries (a
    secret reference stands for its value)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


# --- schema validation ------------------------------------------------------------------------
def test_every_target_validates_strictly_against_kubernetes(rendered: dict[str, Path],
                                                            tmp_path: Path) -> None:
    result = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "--quiet",
                 *rendered.values())
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # Kinds kubernetes-validate has no schema for are only warned about: they must be the
    # prometheus-operator kinds that validate_crds.py checks against deploy/k8s/schemas.
    unknown = set(re.findall(r"Couldn't find schema for kind (\w+) with api version (\S+)", report))
    assert unknown <= {(k, "monitoring.coreos.com/v1") for k in CRD_KINDS}, unknown
    # Strict: a field Kubernetes does not know is an error, not ignored.
    typo = tmp_path / "typo.yaml"
    typo.write_text(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                                "spec": {"ports": [{"port": 80, "targetport": 8080}]}}))
    result = run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, typo)
    assert result.returncode != 0 and "targetport" in result.stdout + result.stderr


def test_overlays_carry_the_monitoring_component(documents: dict[str, list]) -> None:
    for target in ("dev", "prod"):
        kinds = {d["kind"] for d in documents[target]}
        assert kinds & CRD_KINDS, f"{target}: no monitoring resources"
        assert "PrometheusRule" in kinds


def test_crd_schemas_refuse_unknown_and_mistyped_fields(tmp_path: Path) -> None:
    bad = [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "a"},
         "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "metrics", "intervall": "30s"}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "b"},
         "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "for": "five minutes",
                                                       "expr": "up == 0"}]}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Probe", "metadata": {"name": "c"}},
    ]
    path = tmp_path / "bad.yaml"
    path.write_text("\n---\n".join(json.dumps(d) for d in bad), encoding="utf-8")
    rc, out = validate_crds(path)
    assert rc == 1
    text = "\n".join(out["errors"])
    assert "intervall" in text and "five minutes" in text and "no schema for" in text


# --- security ---------------------------------------------------------------------------------
RESTRICTED = {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
              "allowPrivilegeEscalation": False, "seccompProfile": {"type": "RuntimeDefault"}}


def restriction_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every pod meets Pod Security "restricted" and more (read-only root, no token)."""
    problems = []
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True or pod_sc.get("seccompProfile") != {"type": "RuntimeDefault"}:
            problems.append(f"{where}: pod securityContext not restricted")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: service account token mounted")
        if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
            problems.append(f"{where}: host namespaces")
        if any("hostPath" in v for v in spec.get("volumes", [])):
            problems.append(f"{where}: hostPath volume")
        for c in containers(doc):
            sc = c.get("securityContext", {})
            for key, want in RESTRICTED.items():
                if sc.get(key) != want:
                    problems.append(f"{where}/{c['name']}: securityContext.{key} is {sc.get(key)!r}")
            caps = sc.get("capabilities", {})
            if caps.get("drop") != ["ALL"] or caps.get("add"):
                problems.append(f"{where}/{c['name']}: capabilities {caps}")
            if is_herald(c) and sc.get("runAsUser") != 10001:
                problems.append(f"{where}/{c['name']}: Herald image not run as uid 10001")
            if not isinstance(sc.get("runAsUser"), int) or sc["runAsUser"] == 0:
                problems.append(f"{where}/{c['name']}: no numeric non-root runAsUser")
            res = c.get("resources", {})
            if not {"cpu", "memory"} <= set(res.get("requests", {})) or "memory" not in res.get("limits", {}):
                problems.append(f"{where}/{c['name']}: requests/limits missing")
            tag = c["image"].rsplit(":", 1)[-1] if ":" in c["image"].split("/")[-1] else ""
            if not tag or tag == "latest":
                problems.append(f"{where}/{c['name']}: image {c['image']} has no release tag")
    return problems


def secret_reference_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every Secret reference is required (a pod whose Secret is missing does not start)."""
    problems = []

    def walk(node: Any, path: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key in ("secretKeyRef", "secretRef", "secret"):
                ref = node.get(key)
                if isinstance(ref, dict) and ref.get("optional") is not False and "optional" in ref:
                    yield f"{path}.{key}: optional"
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")

    for doc in docs:
        problems += walk(doc, f"{doc['kind']}/{doc['metadata']['name']}")
        if doc["kind"] == "Secret":
            problems.append(f"Secret/{doc['metadata']['name']}: rendered (Secrets are created "
                            "at deploy time, never kept in the manifests)")
    return problems


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_container_is_restricted(documents: dict[str, list], target: str) -> None:
    assert restriction_problems(documents[target]) == []


@pytest.mark.parametrize("target", list(TARGETS))
def test_no_secret_reference_is_optional(documents: dict[str, list], target: str) -> None:
    assert secret_reference_problems(documents[target]) == []


def test_the_checks_catch_a_weakened_manifest(documents: dict[str, list]) -> None:
    docs = copy.deepcopy(documents["dev"])
    campaigns = find(docs, "Deployment", "campaigns")
    sc = pod_spec(campaigns)["containers"][0]["securityContext"]
    sc["allowPrivilegeEscalation"] = True
    sc["capabilities"] = {"add": ["NET_ADMIN"]}
    pod_spec(campaigns)["volumes"][0]["secret"]["optional"] = True
    del pod_spec(find(docs, "StatefulSet", "redis"))["containers"][0]["securityContext"]["runAsNonRoot"]
    problems = restriction_problems(docs) + secret_reference_problems(docs)
    assert any("campaigns/campaigns: securityContext.allowPrivilegeEscalation" in p for p in problems)
    assert any("campaigns/campaigns: capabilities" in p for p in problems)
    assert any("redis/redis: securityContext.runAsNonRoot" in p for p in problems)
    assert any("volumes[0].secret: optional" in p for p in problems)


# --- what production mode and the operator rely on ----------------------------------------
def requirements(process: str, container: dict[str, Any]) -> list[Any]:
    if container.get("args", [])[1:2] == ["migrate"]:
        return production.SQL
    module = importlib.import_module(PROCESSES[process])
    if hasattr(module, "__path__"):  # a package runs its __main__
        module = importlib.import_module(f"{PROCESSES[process]}.__main__")
    return module.REQUIREMENTS


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_process_meets_production_mode(documents: dict[str, list], target: str) -> None:
    """HERALD_PRODUCTION=1 everywhere, and every setting the process's production check
    demands is given (from the ConfigMap, a value, or a required Secret)."""
    docs = documents[target]
    migrations = {f"{p}-migrate": p for p in SQL}
    checked = set()
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        name = doc["metadata"]["name"]
        process = name if name in PROCESSES else migrations.get(name)
        if process is None:
            continue
        for c in containers(doc):
            env = env_of(c, docs)
            where = f"{target}: {doc['kind']}/{name}/{c['name']}"
            assert env.get("HERALD_PRODUCTION") == "1", where
            assert c["args"][0] == PROCESSES[process], where
            for need in requirements(process, c):
                if isinstance(need, production.Need):
                    assert any(env.get(s.name) for s in need.settings), f"{where}: {need.problem()}"
                else:
                    assert env.get(need.setting.name, "0") in ("", "0"), where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod_spec(doc).get("volumes", [])}
            for setting in ("HERALD_TLS_CERT_FILE", "HERALD_TLS_KEY_FILE", "HERALD_TLS_CA_FILE",
                            "HERALD_TOKENS_FILE"):
                if not env.get(setting):
                    continue  # not needed: the requirements above say which ones are
                folder = str(Path(env[setting]).parent)
                assert folder in mounts, f"{where}: {setting} not mounted"
                assert "secret" in volumes[mounts[folder]], f"{where}: {setting} not from a Secret"
            checked.add(name)
    assert checked >= set(PROCESSES) | {f"{p}-migrate" for p in SQL}


def secret_refs(doc: dict[str, Any]) -> set[str]:
    """The Secrets a pod reads: "name" for a whole Secret (volume, envFrom), "name/key" for
    one key (secretKeyRef)."""
    spec = pod_spec(doc)
    refs = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for c in containers(doc):
        refs |= {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
        for item in c.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add(f"{ref['name']}/{ref['key']}")
    return refs


@pytest.mark.parametrize("target", list(TARGETS))
def test_email_roles_read_only_the_secrets_they_use(documents: dict[str, list],
                                                    target: str) -> None:
    """The relay credentials and the DKIM key (herald-email as a whole) reach the sender
    only; the public tracking and bounce servers get the signing keys alone. None of the
    roles has authenticated RPCs, so none reads the bearer tokens."""
    docs = documents[target]
    keys = "herald-email/HERALD_TRACKING_KEYS"
    expected = {"email-sender": {"herald-tls", "herald-email", keys},
                "email-tracking": {"herald-tls", keys},
                "email-bounces": {"herald-tls", keys}}
    for role, secrets in expected.items():
        assert secret_refs(find(docs, "Deployment", role)) == secrets, f"{target} {role}"
        env = env_of(pod_spec(find(docs, "Deployment", role))["containers"][0], docs)
        assert not env.get("HERALD_TOKENS_FILE"), f"{target} {role}: tokens file configured"


def drain_seconds(process: str, env: dict[str, Any], pre_stop: int) -> float:
    """Worst-case stop of each process after SIGTERM, from the code's own bounds."""
    grpc_grace = inspect.signature(ServiceRuntime.shutdown).parameters["grace"].default
    nats_drain = inspect.signature(nats.aio.client.Client.connect).parameters["drain_timeout"].default
    tasks = 5.0  # each service waits 5 s for its consumer/scheduler tasks (its __main__.py)
    if process == "email-sender":
        # in-flight SMTP transactions, then QUIT to the idle relay connections (2 s each, at
        # once: gateways/email/smtp_session.py)
        return pre_stop + email_sender.DRAIN_TIMEOUT + 2 + nats_drain + grpc_grace
    if process == "email-tracking":
        # requests in progress (aiohttp's runner), then the queued tracking events
        requests = inspect.signature(aiohttp.web_runner.BaseRunner.__init__).parameters[
            "shutdown_timeout"].default
        events = inspect.signature(email_tracking.EventQueue.stop).parameters["timeout"].default
        return pre_stop + requests + events + nats_drain + grpc_grace
    if process == "email-bounces":
        return pre_stop + nats_drain + grpc_grace  # the SMTP listener closes at once
    if process == "smpp-gateway":
        response = float(env.get("HERALD_SMPP_RESPONSE_TIMEOUT") or smpp.RESPONSE_TIMEOUT.default)
        record = float(env.get("HERALD_SMPP_RECORD_RETRY_FOR") or smpp.RECORD_RETRY_FOR.default)
        jobs = 3 * response + record + 5  # gateways/smpp/gateway.py: the runtime's drain_timeout
        return pre_stop + jobs + response + 2 + grpc_grace + nats_drain
    return pre_stop + grpc_grace + tasks + nats_drain


def addr_port(env: dict[str, Any], setting: str) -> int:
    return int(env[setting].rsplit(":", 1)[1])


def probed_port(container: dict[str, Any], probe: dict[str, Any]) -> tuple[str, int, str]:
    """(kind, container port number, HTTP path) of a probe; a named port resolved."""
    kind = next(k for k in ("grpc", "httpGet", "tcpSocket") if k in probe)
    port = probe[kind]["port"]
    if isinstance(port, str):
        port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
    return kind, port, probe[kind].get("path", "")


def expected_readiness(process: str, env: dict[str, Any], health_port: int) -> tuple[str, int, str]:
    """What tells that a process serves: the public servers' own listeners (their gRPC
    health is up before they bind), gRPC health for the others."""
    if process == "email-tracking":
        return "httpGet", addr_port(env, "HERALD_TRACKING_ADDR"), "/healthz"
    if process == "email-bounces":
        return "tcpSocket", addr_port(env, "HERALD_BOUNCE_ADDR"), ""
    return "grpc", health_port, ""


@pytest.mark.parametrize("target", list(TARGETS))
def test_processes_are_probed_and_drain_within_their_grace(documents: dict[str, list],
                                                           target: str) -> None:
    docs = documents[target]
    health_port = addr_port(config(docs), "HERALD_HEALTH_ADDR")
    for process in PROCESSES:
        deployment = find(docs, "Deployment", process)
        main = pod_spec(deployment)["containers"][0]
        env = env_of(main, docs)
        ports = {p["containerPort"] for p in main["ports"]}
        assert health_port in ports
        assert probed_port(main, main["livenessProbe"]) == ("grpc", health_port, ""), process
        ready = expected_readiness(process, env, health_port)
        assert ready[1] in ports, f"{process}: port {ready[1]} not declared"
        for probe in ("startupProbe", "readinessProbe"):
            assert probed_port(main, main[probe]) == ready, f"{target} {process} {probe}"
        pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        drain = drain_seconds(process, env, pre_stop)
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace >= drain, f"{target} {process}: grace {grace} s < worst-case drain {drain} s"
        if process in SQL:
            init = pod_spec(deployment)["initContainers"][0]
            assert init["args"] == [PROCESSES[process], "migrate"]
            assert find(docs, "Job", f"{process}-migrate")
        for kind in ("Service", "ServiceAccount", "PodDisruptionBudget"):
            find(docs, kind, process)
        assert find(docs, "ServiceAccount", process)["automountServiceAccountToken"] is False
        hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"
                and d["spec"]["scaleTargetRef"]["name"] == process]
        if target == "dev" or process not in AUTOSCALED:
            assert hpas == [], f"{target}: {process} must not autoscale"
        else:
            assert len(hpas) == 1 and "replicas" not in deployment["spec"]


def test_drain_bound_follows_the_gateway_settings() -> None:
    # 3 x 10 s response timeout + 60 s record retries + 5 s = the documented 95 s of jobs,
    # plus receipts, unbind, gRPC grace and NATS drain.
    assert drain_seconds("smpp-gateway", {}, 0) == 95 + 10 + 2 + 5 + 30
    assert drain_seconds("smpp-gateway", {"HERALD_SMPP_RESPONSE_TIMEOUT": "30"}, 0) == 222
    # The email roles: the sender's 30 s SMTP drain, the tracking server's 60 s for requests
    # in progress and 5 s for queued events, the bounce server's listener closing at once.
    assert drain_seconds("email-sender", {}, 0) == 30 + 2 + 30 + 5
    assert drain_seconds("email-tracking", {}, 5) == 5 + 60 + 5 + 30 + 5
    assert drain_seconds("email-bounces", {}, 5) == 5 + 30 + 5


def egress_ports(docs: list[dict[str, Any]], process: str) -> set[int]:
    ports = set()
    for doc in docs:
        if doc["kind"] != "NetworkPolicy" or "Egress" not in doc["spec"]["policyTypes"]:
            continue
        selector = doc["spec"]["podSelector"]
        labels = selector.get("matchLabels", {})
        if selector and labels.get("app.kubernetes.io/name") != process:
            continue
        for rule in doc["spec"].get("egress", []):
            ports |= {p["port"] for p in rule.get("ports", [])}
    return ports


def ingress_rules(docs: list[dict[str, Any]], process: str) -> list[dict[str, Any]]:
    """The ingress rules of the policies that select `process` by name alone (the shared
    gRPC and metrics policies select a list of processes)."""
    return [rule for doc in docs if doc["kind"] == "NetworkPolicy"
            and "Ingress" in doc["spec"]["policyTypes"]
            and doc["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == process
            for rule in doc["spec"].get("ingress", [])]


def shared_ingress(docs: list[dict[str, Any]], policy: str) -> set[str]:
    selector = find(docs, "NetworkPolicy", policy)["spec"]["podSelector"]
    return {v for e in selector["matchExpressions"] if e["key"] == "app.kubernetes.io/name"
            for v in e["values"]}


@pytest.mark.parametrize("target", list(TARGETS))
def test_network_policies_deny_by_default_and_allow_what_each_process_uses(
        documents: dict[str, list], target: str) -> None:
    docs = documents[target]
    deny = find(docs, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "egress" not in deny and "ingress" not in deny
    expected = {"campaigns": {53, 50051, 4222, 5432}, "recipients": {53, 4222, 5432},
                "stats": {53, 50051, 4222, 6379}, "smpp-gateway": {53, 4222, 6379, 2775},
                "email-sender": {53, 4222, 6379, 25, 465, 587},
                "email-tracking": {53, 4222},  # events to NATS; no Redis
                "email-bounces": {53, 4222, 6379}}
    assert set(expected) == set(PROCESSES)
    for process, ports in expected.items():
        allowed = egress_ports(docs, process)
        if target == "dev" and process == "email-sender":
            allowed.discard(2525)  # the dev SMTP sink
        assert allowed == ports, f"{target} {process}: {sorted(allowed)}"
    metrics = find(docs, "NetworkPolicy", "allow-metrics-from-monitoring")["spec"]["ingress"][0]
    assert metrics["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    for policy in ("allow-metrics-from-monitoring", "allow-grpc-in-namespace"):
        assert shared_ingress(docs, policy) == set(PROCESSES), policy
    # Public ingress: the tracking port from the Ingress controller's namespace only, the
    # bounce port from anywhere, nothing for the sender.
    tracking_port = addr_port(env_of(pod_spec(find(docs, "Deployment", "email-tracking"))
                                     ["containers"][0], docs), "HERALD_TRACKING_ADDR")
    bounce_port = addr_port(env_of(pod_spec(find(docs, "Deployment", "email-bounces"))
                                   ["containers"][0], docs), "HERALD_BOUNCE_ADDR")
    [tracking] = ingress_rules(docs, "email-tracking")
    assert [p["port"] for p in tracking["ports"]] == [tracking_port]
    assert [f["namespaceSelector"]["matchLabels"] for f in tracking["from"]] == [
        {"kubernetes.io/metadata.name": "ingress-nginx"}]
    [bounces] = ingress_rules(docs, "email-bounces")
    assert "from" not in bounces and [p["port"] for p in bounces["ports"]] == [bounce_port]
    assert ingress_rules(docs, "email-sender") == []
    if target == "dev":  # the in-namespace NATS and Redis admit exactly their clients
        clients = {name: {p for p, ports in expected.items() if port in ports}
                   for name, port in (("nats-clients", 4222), ("redis-clients", 6379))}
        for policy, allowed in clients.items():
            sel = find(docs, "NetworkPolicy", policy)["spec"]["ingress"][0]["from"][0]["podSelector"]
            assert set(sel["matchExpressions"][0]["values"]) == allowed, policy


def service_reaches(docs: list[dict[str, Any]], service: dict[str, Any], port: dict[str, Any],
                    process: str, setting: str) -> None:
    """`service` selects `process`'s pods, and its `port` lands where `setting` listens."""
    pods = find(docs, "Deployment", process)["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pods.items(), f"{process}: selector {service['selector']}"
    main = pod_spec(find(docs, "Deployment", process))["containers"][0]
    target = next(p["containerPort"] for p in main["ports"] if p.get("name") == port["targetPort"])
    assert target == addr_port(env_of(main, docs), setting), f"{process}: {port}"


def test_public_surfaces(documents: dict[str, list]) -> None:
    """The Ingress reaches the tracking server, the LoadBalancer (port 25, nothing else) the
    bounce server; the sender is not exposed."""
    for target in TARGETS:
        docs = documents[target]
        rule = find(docs, "Ingress", "herald-tracking")["spec"]["rules"][0]
        path = rule["http"]["paths"][0]
        assert path["path"] == "/" and path["backend"]["service"] == {
            "name": "email-tracking", "port": {"name": "tracking"}}
        tracking = find(docs, "Service", "email-tracking")["spec"]
        assert tracking.get("type", "ClusterIP") == "ClusterIP"
        [port] = [p for p in tracking["ports"] if p["name"] == "tracking"]
        service_reaches(docs, tracking, port, "email-tracking", "HERALD_TRACKING_ADDR")
        bounces = find(docs, "Service", "email-bounces")["spec"]
        assert bounces["type"] == "LoadBalancer" and bounces["externalTrafficPolicy"] == "Local"
        assert [p["port"] for p in bounces["ports"]] == [25]
        service_reaches(docs, bounces, bounces["ports"][0], "email-bounces", "HERALD_BOUNCE_ADDR")
        public = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"
                  and d["spec"].get("type") in ("LoadBalancer", "NodePort")]
        assert public == ["email-bounces"], f"{target}: {public}"


def test_dev_runs_durable_datastores_and_the_test_peers(documents: dict[str, list]) -> None:
    docs = documents["dev"]
    nats = find(docs, "StatefulSet", "nats")
    assert {"-js", "-sd"} <= set(pod_spec(nats)["containers"][0]["args"])
    args = " ".join(pod_spec(find(docs, "StatefulSet", "redis"))["containers"][0]["args"])
    assert "--appendonly yes" in args and "--appendfsync everysec" in args
    for name in ("nats", "redis", "postgres"):
        assert find(docs, "StatefulSet", name)["spec"]["volumeClaimTemplates"]
        find(docs, "Service", name)
    for name, module in (("smsc-simulator", "gateways.smpp.simulator"),
                         ("smtp-sink", "gateways.email.sink")):
        assert pod_spec(find(docs, "Deployment", name))["containers"][0]["args"] == [module]
    cfg = config(docs)
    assert (cfg["HERALD_SMPP_HOST"], cfg["HERALD_SMTP_HOST"]) == ("smsc-simulator", "smtp-sink")
    for name in ("campaigns", "smpp-gateway", "email-bounces"):
        assert find(docs, "Deployment", name)["spec"]["replicas"] == 1


def test_prod_points_at_external_servers_with_replicated_streams(documents: dict[str, list]) -> None:
    docs = documents["prod"]
    cfg = config(docs)
    assert cfg["HERALD_JETSTREAM_REPLICAS"] == "3"
    assert int(cfg["HERALD_JOBS_MAX_BYTES"]) > 0 and int(cfg["HERALD_EVENTS_MAX_BYTES"]) > 0
    assert not {d["metadata"]["name"] for d in docs if d["kind"] == "StatefulSet"}
    for process in PROCESSES:
        spec = pod_spec(find(docs, "Deployment", process))
        assert spec["affinity"]["podAntiAffinity"]
        assert spec["topologySpreadConstraints"]


# --- checkov ------------------------------------------------------------------------------
def test_checkov_passes_and_fails_on_a_security_regression(documents: dict[str, list],
                                                           rendered: dict[str, Path],
                                                           tmp_path: Path) -> None:
    """One checkov run over the rendered targets and a weakened copy of dev: the targets
    pass with the listed skips, the weakened copy fails the checks it broke."""
    for path in rendered.values():
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    weak = copy.deepcopy([d for d in documents["dev"] if d["kind"] == "Deployment"])
    for doc in weak:
        c = pod_spec(doc)["containers"][0]
        c["securityContext"].update(allowPrivilegeEscalation=True, readOnlyRootFilesystem=False)
        c["image"] = c["image"].split(":")[0] + ":latest"
    (tmp_path / "weakened").mkdir()
    (tmp_path / "weakened/dev.yaml").write_text("\n---\n".join(json.dumps(d) for d in weak),
                                                encoding="utf-8")
    result = run(tool("checkov"), "--config-file", K8S / "checkov.yaml", "-d", tmp_path,
                 "-o", "json", timeout=180)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f for r in reports for f in r["results"]["failed_checks"]]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    clean = [f"{f['file_path']}: {f['check_id']} {f['resource']}" for f in failed
             if "weakened" not in f["file_path"]]
    assert clean == []
    broken = {f["check_id"] for f in failed}
    # allowPrivilegeEscalation, readOnlyRootFilesystem, image tag
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_14"} <= broken, broken
