"""Property checks over rendered Kubernetes objects.

Each check takes the rendered objects (a list of dicts) and returns a list of
problems (strings); empty means the property holds. test_manifests.py runs
them on every overlay, test_checks.py proves each one fails on a broken
input, so a check that silently passes everything would be caught.
The targets are rendered with `kubectl kustomize` (see kubectl()).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from urllib.parse import urlparse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY = os.path.dirname(HERE)

# Rendered targets: name -> kustomization directory (relative to deploy/).
TARGETS = {
    "dev": "k8s/overlays/dev",
    "production": "k8s/overlays/production",
    "production-autoscaled": "k8s/overlays/production-autoscaled",
    "production-tls": "tests/fixtures/production-tls",
    "production-pools": "k8s/overlays/production-pools",
}

# The coordinator's API port (TESTRUNNER_LISTEN; container/Service port
# "api"): API, grpc-web, console, health probes, /metrics.
COORDINATOR_PORT = 50051
# Its runner port (TESTRUNNER_RUNNER_LISTEN; container/Service port
# "runners"): the runner protocol on prioritised threads. Runners use it.
COORDINATOR_RUNNER_PORT = 50052
RUNNER_PORT_NAME = "runners"
# TESTRUNNER_API_NICE, when set at all (the manifests leave the default).
API_NICE_RANGE = range(0, 20)
RUNNER_METRICS_PORT = 9091
HEALTH_SERVICE = "testrunner.v1.TestrunService"
COORDINATOR_LABELS = {"app.kubernetes.io/name": "testrunner-coordinator"}
RUNNER_LABELS = {"app.kubernetes.io/name": "testrunner-runner"}
# Secrets this project expects to be created outside these manifests
# (documented in the Ingress): TLS for the ingress host.
EXTERNAL_SECRETS = {"testrunner-ingress-tls"}
# Keys cert-manager writes into a Certificate's Secret.
CERT_MANAGER_KEYS = {"tls.crt", "tls.key", "ca.crt"}


# Kinds without a namespace among those the manifests could contain.
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "APIService", "RuntimeClass", "ClusterIssuer",
}


def kubectl() -> str:
    """The kubectl whose built-in kustomize renders the targets: $KUBECTL
    when set (validate.sh sets it to the one it chose or installed, and an
    empty value means none), else PATH's."""
    exe = os.environ["KUBECTL"] if "KUBECTL" in os.environ else shutil.which("kubectl")
    if not exe:
        raise RuntimeError("no kubectl: run deploy/validate.sh, or set KUBECTL to a kubectl with kustomize v5")
    return exe


def kustomize(directory: str) -> list[dict]:
    """Render a kustomization with `kubectl kustomize` into objects."""
    res = subprocess.run([kubectl(), "kustomize", directory], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {res.stderr.strip()}")
    objs = [d for d in yaml.safe_load_all(res.stdout) if d is not None]
    if not objs:
        raise RuntimeError(f"kubectl kustomize {directory} rendered no object")
    return objs


_cache: dict[str, list[dict]] = {}


def render(target: str) -> list[dict]:
    """A target's objects (a fresh copy each call: tests may break them)."""
    if target not in _cache:
        _cache[target] = kustomize(os.path.join(DEPLOY, TARGETS[target]))
    return copy.deepcopy(_cache[target])


# ---------------------------------------------------------------- helpers


def find(objs, kind, name=None):
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs, kind, name):
    hits = find(objs, kind, name)
    if len(hits) != 1:
        raise AssertionError(f"expected exactly one {kind}/{name}, found {len(hits)}")
    return hits[0]


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod")


def workloads(objs):
    return [o for o in objs if o["kind"] in WORKLOADS]


def pod_spec(o):
    """The pod spec inside a workload object (None for other kinds)."""
    spec = o.get("spec") or {}
    if o["kind"] == "Pod":
        return spec
    if o["kind"] == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    template = spec.get("template")
    if isinstance(template, dict) and "spec" in template:
        return template["spec"]
    return None


def pod_labels(o):
    return (o.get("spec", {}).get("template", {}).get("metadata", {}) or {}).get("labels", {}) or {}


def containers(o, init=True):
    ps = pod_spec(o) or {}
    out = list(ps.get("containers") or [])
    if init:
        out += list(ps.get("initContainers") or [])
    return out


def container(objs, kind, name, cname):
    for c in containers(one(objs, kind, name)):
        if c["name"] == cname:
            return c
    raise AssertionError(f"{kind}/{name} has no container {cname}")


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """matchLabels/matchExpressions semantics; an empty selector matches all."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and labels.get(key) in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def env_map(objs, c) -> dict:
    """Effective environment of a container: envFrom, then env (env wins).

    Values from Secrets or the downward API are given as markers."""
    out: dict = {}
    for ef in c.get("envFrom") or []:
        if "configMapRef" in ef:
            hits = find(objs, "ConfigMap", ef["configMapRef"]["name"])
            for cm in hits:
                for k, v in (cm.get("data") or {}).items():
                    out[(ef.get("prefix") or "") + k] = v
        if "secretRef" in ef:
            for s in find(objs, "Secret", ef["secretRef"]["name"]):
                for k in secret_keys(s):
                    out[(ef.get("prefix") or "") + k] = ("secret", s["metadata"]["name"], k)
    for e in c.get("env") or []:
        if "value" in e:
            out[e["name"]] = e["value"]
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            if "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                hits = find(objs, "ConfigMap", ref["name"])
                out[e["name"]] = hits[0].get("data", {}).get(ref["key"]) if hits else None
            elif "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                out[e["name"]] = ("secret", ref["name"], ref["key"])
            else:
                out[e["name"]] = ("fieldRef", str(vf))
        else:
            out[e["name"]] = ""
    return out


def secret_keys(s) -> set:
    return set((s.get("data") or {}).keys()) | set((s.get("stringData") or {}).keys())


def secret_value(objs, name, key):
    s = one(objs, "Secret", name)
    if key in (s.get("stringData") or {}):
        return s["stringData"][key]
    import base64

    return base64.b64decode(s["data"][key]).decode()


def parse_duration(text: str) -> float:
    """humantime-style durations used in the config: 90, 60s, 1m30s, 2m, 500ms."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total, pos = 0.0, 0
    for m in re.finditer(r"\s*(\d+)\s*(ms|sec|min|s|m|h)", text):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"bad duration {text!r}")
    return total


_SUFFIX = {
    "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


def quantity(q) -> float:
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        raise ValueError(f"bad quantity {q!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def listen_port(addr: str) -> int:
    return int(str(addr).rsplit(":", 1)[1])


def container_port(c, port) -> int | None:
    """Resolve a probe/Service port (number or name) against a container."""
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    return None


def namespaced(o) -> bool:
    return o["kind"] not in CLUSTER_SCOPED


def split_image(image: str) -> tuple[str, str, str]:
    """name[:tag][@digest] -> (name, tag, digest); a registry port is no tag."""
    name, digest = (image.split("@", 1) + [""])[:2]
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


# ---------------------------------------------------------------- checks


def check_coordinator_probes(objs, tls: bool = False) -> list[str]:
    p = []
    c = container(objs, "Deployment", "coordinator", "coordinator")
    env = env_map(objs, c)
    listen = env.get("TESTRUNNER_LISTEN")
    if listen != f"0.0.0.0:{COORDINATOR_PORT}":
        p.append(f"coordinator TESTRUNNER_LISTEN is {listen!r}, want 0.0.0.0:{COORDINATOR_PORT}")
    ports = {pp["containerPort"] for pp in c.get("ports") or []}
    if COORDINATOR_PORT not in ports:
        p.append(f"coordinator does not declare containerPort {COORDINATOR_PORT}")
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = c.get(kind)
        if not probe:
            if kind != "startupProbe":
                p.append(f"coordinator has no {kind}")
            continue
        if tls:
            # The kubelet's gRPC probe cannot speak TLS.
            if "grpc" in probe:
                p.append(f"coordinator {kind} is a gRPC probe on a TLS port")
            elif container_port(c, (probe.get("tcpSocket") or {}).get("port")) != COORDINATOR_PORT:
                p.append(f"coordinator {kind} is not a TCP check on {COORDINATOR_PORT}")
            continue
        g = probe.get("grpc")
        if not g:
            p.append(f"coordinator {kind} is not a gRPC probe")
            continue
        if g.get("port") != COORDINATOR_PORT:
            p.append(f"coordinator {kind} probes port {g.get('port')}, want {COORDINATOR_PORT}")
        want = HEALTH_SERVICE if kind == "readinessProbe" else ""
        if g.get("service", "") != want:
            p.append(f"coordinator {kind} checks health service {g.get('service')!r}, want {want!r}")
    return p


def check_runner_probes(objs) -> list[str]:
    p = []
    c = container(objs, "Deployment", "runner", "runner")
    listen = env_map(objs, c).get("TESTRUNNER_METRICS_LISTEN")
    if not listen or listen_port(listen) != RUNNER_METRICS_PORT:
        p.append(f"runner TESTRUNNER_METRICS_LISTEN is {listen!r}")
    for kind in ("readinessProbe", "livenessProbe"):
        probe = c.get(kind) or {}
        h = probe.get("httpGet")
        if not h:
            p.append(f"runner {kind} is not an HTTP probe")
            continue
        if h.get("path") != "/healthz":
            p.append(f"runner {kind} path {h.get('path')!r}")
        if container_port(c, h.get("port")) != RUNNER_METRICS_PORT:
            p.append(f"runner {kind} port {h.get('port')!r} is not the metrics port")
    return p


def check_drain_grace(objs, margin: float = 10) -> list[str]:
    p = []
    d = one(objs, "Deployment", "runner")
    c = container(objs, "Deployment", "runner", "runner")
    drain = env_map(objs, c).get("TESTRUNNER_DRAIN_TIMEOUT")
    if drain is None:
        return ["runner has no TESTRUNNER_DRAIN_TIMEOUT"]
    grace = pod_spec(d).get("terminationGracePeriodSeconds", 30)
    if not grace >= parse_duration(drain) + margin:
        p.append(f"runner terminationGracePeriodSeconds {grace} is not >= drain timeout {drain} + {margin}s")
    return p


def check_resources(objs) -> list[str]:
    p = []
    for w in workloads(objs):
        for c in containers(w):
            r = c.get("resources") or {}
            where = f"{w['kind']}/{w['metadata']['name']}/{c['name']}"
            for section in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in (r.get(section) or {}):
                        p.append(f"{where}: no {section}.{res}")
            for res, lim in (r.get("limits") or {}).items():
                req = (r.get("requests") or {}).get(res)
                if req is not None and quantity(req) > quantity(lim):
                    p.append(f"{where}: request {res}={req} above limit {lim}")
    return p


def check_slots_fit_cpu(objs) -> list[str]:
    c = container(objs, "Deployment", "runner", "runner")
    slots = env_map(objs, c).get("TESTRUNNER_SLOTS")
    if slots is None:
        return ["runner has no TESTRUNNER_SLOTS (it would default to the node's CPU count)"]
    limit = quantity(c["resources"]["limits"]["cpu"])
    if int(slots) > limit:
        return [f"runner TESTRUNNER_SLOTS={slots} exceeds its CPU limit {limit}"]
    return []


# What the runner container may hold as root to run tests as per-slot uids:
# switch uid/gid, kill a test's leftovers, hand a test its work directory
# and remove it afterwards. Nothing else (no SYS_ADMIN, no NET_*, ...).
RUNNER_CAPABILITIES = {"SETUID", "SETGID", "KILL", "CHOWN", "FOWNER", "DAC_OVERRIDE"}


def is_runner(w, c) -> bool:
    return w["kind"] == "Deployment" and w["metadata"]["name"] == "runner" and c["name"] == "runner"


def check_security(objs) -> list[str]:
    """Every container non-root with every capability dropped, except the
    runner: root, holding only RUNNER_CAPABILITIES, so that its tests run
    as uids of their own (check_token_out_of_tests' reach)."""
    p = []
    for w in workloads(objs):
        ps = pod_spec(w)
        psc = ps.get("securityContext") or {}
        for c in containers(w):
            where = f"{w['kind']}/{w['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext") or {}
            caps = sc.get("capabilities") or {}
            added = set(caps.get("add") or [])
            if is_runner(w, c):
                extra = added - RUNNER_CAPABILITIES
                if extra:
                    p.append(f"{where}: capabilities beyond running tests as other uids: {sorted(extra)}")
            else:
                if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                    p.append(f"{where}: runAsNonRoot is not true")
                uid = sc.get("runAsUser", psc.get("runAsUser"))
                if uid is not None and uid == 0:
                    p.append(f"{where}: runAsUser 0")
                if added:
                    p.append(f"{where}: capabilities added: {sorted(added)}")
            if sc.get("privileged") is True:
                p.append(f"{where}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                p.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in (caps.get("drop") or []):
                p.append(f"{where}: capabilities not dropped")
            if sc.get("readOnlyRootFilesystem") is not True:
                p.append(f"{where}: root filesystem is writable")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
            vols = {v["name"]: v for v in ps.get("volumes") or []}
            if "/tmp" not in mounts or "emptyDir" not in vols.get(mounts["/tmp"], {}):
                p.append(f"{where}: no emptyDir mounted at /tmp")
        if ps.get("automountServiceAccountToken") is not False:
            p.append(f"{w['kind']}/{w['metadata']['name']}: service account token mounted")
        if ((psc.get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
            p.append(f"{w['kind']}/{w['metadata']['name']}: no RuntimeDefault seccomp profile")
    return p


def check_pdb(objs) -> list[str]:
    p = []
    pdbs = find(objs, "PodDisruptionBudget")
    runner = one(objs, "Deployment", "runner")
    coord = one(objs, "Deployment", "coordinator")
    covering = [b for b in pdbs if selector_matches(b["spec"].get("selector"), pod_labels(runner))]
    if not covering:
        p.append("no PodDisruptionBudget selects the runner pods")
    for b in covering:
        if selector_matches(b["spec"].get("selector"), pod_labels(coord)):
            p.append(f"PDB {b['metadata']['name']} also selects the coordinator")
        mu = b["spec"].get("maxUnavailable")
        if mu is None or mu in (0, "0", "0%"):
            p.append(f"PDB {b['metadata']['name']}: maxUnavailable must allow evictions (got {mu!r})")
    for b in pdbs:
        if not any(selector_matches(b["spec"].get("selector"), pod_labels(w)) for w in workloads(objs)):
            p.append(f"PDB {b['metadata']['name']} selects no pods")
    return p


def _peer_kinds(objs, peer, ns) -> str:
    if "ipBlock" in peer:
        return "ipBlock"
    if "namespaceSelector" in peer:
        nsl = peer["namespaceSelector"].get("matchLabels") or {}
        pod = (peer.get("podSelector") or {}).get("matchLabels") or {}
        return f"ns:{nsl.get('kubernetes.io/metadata.name', '*')}/pods:{pod.get('app.kubernetes.io/name', '*')}"
    sel = peer.get("podSelector")
    for w in workloads(objs):
        if w["metadata"].get("namespace") == ns and selector_matches(sel, pod_labels(w)):
            return f"local:{w['metadata']['name']}"
    return "local:nothing"


def coordinator_peers(objs) -> tuple[dict, list[str]]:
    """Who the NetworkPolicies let reach which coordinator port, and problems.

    Returns {container port: {peer}}; named policy ports are resolved
    against the coordinator container. A rule without ports (every port) is
    a problem and counts under None."""
    p = []
    coord = one(objs, "Deployment", "coordinator")
    c = container(objs, "Deployment", "coordinator", "coordinator")
    ns = coord["metadata"].get("namespace")
    peers: dict = {}
    pols = [
        n for n in find(objs, "NetworkPolicy")
        if n["metadata"].get("namespace") == ns and selector_matches(n["spec"].get("podSelector"), pod_labels(coord))
    ]
    if not pols:
        return peers, ["no NetworkPolicy selects the coordinator pods"]
    for n in pols:
        name = n["metadata"]["name"]
        if "Ingress" not in (n["spec"].get("policyTypes") or []):
            p.append(f"NetworkPolicy {name} does not restrict Ingress")
        for rule in n["spec"].get("ingress") or []:
            if not rule.get("from"):
                p.append(f"NetworkPolicy {name} has a rule open to every source")
            ports = set()
            for pp in rule.get("ports") or []:
                if pp.get("protocol", "TCP") != "TCP" or "endPort" in pp:
                    p.append(f"NetworkPolicy {name} rule port {pp} is not a single TCP port")
                ports.add(container_port(c, pp.get("port")))
            if not ports:
                p.append(f"NetworkPolicy {name} has a rule open on every port")
                ports = {None}
            for port in ports:
                for peer in rule.get("from") or []:
                    peers.setdefault(port, set()).add(_peer_kinds(objs, peer, ns))
    return peers, p


def check_network_policy(objs, extra: set = frozenset(), pools: set = frozenset()) -> list[str]:
    """Runners reach only the runner port, and only runners reach it; the
    ingress controller (plus `extra`, e.g. Prometheus) reaches the API port.
    `pools`: the runner pools' peers besides the default one (local:NAME)."""
    peers, p = coordinator_peers(objs)
    want = {
        COORDINATOR_PORT: {"ns:ingress-nginx/pods:ingress-nginx"} | set(extra),
        COORDINATOR_RUNNER_PORT: {"local:runner"} | set(pools),
    }
    if peers and peers != want:
        got = {k: sorted(v) for k, v in peers.items()}
        p.append(f"coordinator reachable as {got}, want {({k: sorted(v) for k, v in want.items()})}")
    return p


def check_references(objs) -> list[str]:
    """Every ConfigMap/Secret a pod uses exists with the keys it names."""
    p = []
    secrets = {s["metadata"]["name"]: secret_keys(s) for s in find(objs, "Secret")}
    for cert in find(objs, "Certificate"):
        secrets.setdefault(cert["spec"]["secretName"], set()).update(CERT_MANAGER_KEYS)
    cms = {c["metadata"]["name"]: set((c.get("data") or {}).keys()) for c in find(objs, "ConfigMap")}

    def need(kind, name, key, optional, where):
        table = secrets if kind == "Secret" else cms
        if optional:
            return
        if name not in table:
            p.append(f"{where}: {kind} {name} does not exist")
        elif key is not None and key not in table[name]:
            p.append(f"{where}: {kind} {name} has no key {key}")

    for w in workloads(objs):
        ps = pod_spec(w)
        for c in containers(w):
            where = f"{w['kind']}/{w['metadata']['name']}/{c['name']}"
            for ef in c.get("envFrom") or []:
                for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if field in ef:
                        need(kind, ef[field]["name"], None, ef[field].get("optional"), where)
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if field in vf:
                        ref = vf[field]
                        need(kind, ref["name"], ref["key"], ref.get("optional"), f"{where} env {e['name']}")
            vols = {v["name"] for v in ps.get("volumes") or []}
            vols |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates") or []}
            for m in c.get("volumeMounts") or []:
                if m["name"] not in vols:
                    p.append(f"{where}: mounts unknown volume {m['name']}")
        for v in ps.get("volumes") or []:
            where = f"{w['kind']}/{w['metadata']['name']} volume {v['name']}"
            if "secret" in v:
                s = v["secret"]
                for item in s.get("items") or [None]:
                    need("Secret", s["secretName"], item and item["key"], s.get("optional"), where)
            if "configMap" in v:
                cm = v["configMap"]
                for item in cm.get("items") or [None]:
                    need("ConfigMap", cm["name"], item and item["key"], cm.get("optional"), where)
    for ing in find(objs, "Ingress"):
        for t in ing["spec"].get("tls") or []:
            if t.get("secretName") not in secrets and t.get("secretName") not in EXTERNAL_SECRETS:
                p.append(f"Ingress {ing['metadata']['name']}: TLS secret {t.get('secretName')} unknown")
    return p


def check_services(objs) -> list[str]:
    p = []
    for svc in find(objs, "Service"):
        sel = svc["spec"].get("selector") or {}
        backing = [w for w in workloads(objs) if selector_matches({"matchLabels": sel}, pod_labels(w))]
        if len(backing) != 1:
            p.append(f"Service {svc['metadata']['name']} selects {len(backing)} workloads")
            continue
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort", port["port"])
            if not any(container_port(c, tp) for c in containers(backing[0], init=False)):
                p.append(f"Service {svc['metadata']['name']} targetPort {tp!r} is not a container port")
    for ing in find(objs, "Ingress"):
        for rule in ing["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                b = path["backend"]["service"]
                svcs = find(objs, "Service", b["name"])
                if not svcs:
                    p.append(f"Ingress backend Service {b['name']} does not exist")
                elif b["port"].get("number") not in {pp["port"] for pp in svcs[0]["spec"]["ports"]}:
                    p.append(f"Ingress backend port {b['port']} is not on Service {b['name']}")
    return p


def runner_token_file(objs):
    """Where runners read their token: ("secret", name, key) of the Secret
    volume item behind TESTRUNNER_RUNNER_TOKEN_FILE, or a description of
    what is there instead."""
    c = container(objs, "Deployment", "runner", "runner")
    path = env_map(objs, c).get("TESTRUNNER_RUNNER_TOKEN_FILE")
    if not isinstance(path, str) or "/" not in path:
        return f"no TESTRUNNER_RUNNER_TOKEN_FILE ({path!r})"
    directory, name = path.rsplit("/", 1)
    mounts = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == directory]
    if not mounts:
        return f"nothing mounted at {directory}"
    spec = one(objs, "Deployment", "runner")["spec"]["template"]["spec"]
    vols = [v for v in spec.get("volumes") or [] if v.get("name") == mounts[0]["name"]]
    secret = (vols[0].get("secret") if vols else None) or {}
    for item in secret.get("items") or []:
        if item.get("path") == name:
            return ("secret", secret.get("secretName"), item.get("key"))
    return f"{path} is not an item of a Secret volume"


def check_shared_token(objs) -> list[str]:
    """Coordinator and runners read the runner token from the same key;
    runners from a mounted file (--token-file), never the environment,
    where every process of the runner's user could once read it."""
    c = env_map(objs, container(objs, "Deployment", "coordinator", "coordinator")).get("TESTRUNNER_RUNNER_TOKEN")
    renv = env_map(objs, container(objs, "Deployment", "runner", "runner"))
    r = runner_token_file(objs)
    p = []
    if not (isinstance(c, tuple) and c[0] == "secret"):
        p.append(f"coordinator runner token not from a Secret: {c!r}")
    elif c != r:
        p.append(f"coordinator reads the runner token from {c}, runners from {r}")
    if "TESTRUNNER_RUNNER_TOKEN" in renv:
        p.append("runners get the token in their environment; mount it and use TESTRUNNER_RUNNER_TOKEN_FILE")
    return p


def check_token_out_of_tests(objs) -> list[str]:
    """No test can read the runner token (issue 17): tests run as per-slot
    uids, which takes a runner that may switch users (root with SETUID and
    SETGID), and the Secret's file is readable by its owner (root) alone.
    With `--test-user runner` tests would share the runner's uid, and with
    it the token file."""
    p = []
    c = container(objs, "Deployment", "runner", "runner")
    env = env_map(objs, c)
    mode = env.get("TESTRUNNER_TEST_USER", "auto")
    if mode not in ("per-slot", "auto"):
        p.append(f"runner: TESTRUNNER_TEST_USER={mode!r}: tests would run as the runner's user and read its token file")
    ps = pod_spec(one(objs, "Deployment", "runner"))
    psc = ps.get("securityContext") or {}
    sc = c.get("securityContext") or {}
    uid = sc.get("runAsUser", psc.get("runAsUser"))
    caps = set((sc.get("capabilities") or {}).get("add") or [])
    if uid != 0 or not {"SETUID", "SETGID"} <= caps:
        p.append(f"runner: runs as uid {uid} with {sorted(caps)}: it cannot give tests uids of their own")
    where = runner_token_file(objs)
    if not isinstance(where, tuple):
        p.append(f"runner: token file: {where}")
        return p
    path = env["TESTRUNNER_RUNNER_TOKEN_FILE"]
    directory, name = path.rsplit("/", 1)
    mount = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == directory][0]
    vol = [v for v in ps.get("volumes") or [] if v.get("name") == mount["name"]][0]["secret"]
    item = [i for i in vol.get("items") or [] if i.get("path") == name][0]
    file_mode = item.get("mode", vol.get("defaultMode", 0o644))
    if file_mode & 0o077:
        p.append(f"runner: the token file's mode {file_mode:04o} lets others than its owner read it")
    if psc.get("fsGroup") is not None and file_mode & 0o070:
        p.append("runner: fsGroup makes the token file readable by the pod's group")
    if mount.get("readOnly") is not True:
        p.append("runner: the token volume is not mounted read-only")
    return p


def check_runner_reaches_coordinator(objs, scheme: str = "http") -> list[str]:
    """Runners' TESTRUNNER_COORDINATOR is the coordinator Service's runner
    port, which leads to the coordinator's runner listener, and the
    NetworkPolicies admit runner pods there."""
    r = env_map(objs, container(objs, "Deployment", "runner", "runner")).get("TESTRUNNER_COORDINATOR")
    u = urlparse(str(r))
    p = []
    if u.scheme != scheme:
        p.append(f"runner TESTRUNNER_COORDINATOR scheme {u.scheme!r}, want {scheme!r}")
    if u.port != COORDINATOR_RUNNER_PORT:
        p.append(f"runner TESTRUNNER_COORDINATOR port {u.port}, want the runner port {COORDINATOR_RUNNER_PORT}")
    coord = one(objs, "Deployment", "coordinator")
    svcs = find(objs, "Service", u.hostname)
    if not svcs:
        p.append(f"runner TESTRUNNER_COORDINATOR host {u.hostname!r} is not a Service")
        return p
    svc_ports = [pp for pp in svcs[0]["spec"]["ports"] if pp["port"] == u.port]
    if not svc_ports:
        p.append(f"runner TESTRUNNER_COORDINATOR port {u.port} not on Service {u.hostname}")
        return p
    if not selector_matches({"matchLabels": svcs[0]["spec"].get("selector") or {}}, pod_labels(coord)):
        p.append(f"Service {u.hostname} does not select the coordinator")
        return p
    c = container(objs, "Deployment", "coordinator", "coordinator")
    target = container_port(c, svc_ports[0].get("targetPort", svc_ports[0]["port"]))
    runner_listen = env_map(objs, c).get("TESTRUNNER_RUNNER_LISTEN")
    if not runner_listen or target != listen_port(runner_listen):
        p.append(f"Service {u.hostname} port {u.port} leads to coordinator port {target}, "
                 f"not its runner listener {runner_listen!r}")
    peers, _ = coordinator_peers(objs)
    if peers and "local:runner" not in peers.get(target, set()):
        p.append(f"no NetworkPolicy admits runner pods to coordinator port {target}")
    return p


def check_coordinator_runner_port(objs) -> list[str]:
    """The coordinator listens for runners on COORDINATOR_RUNNER_PORT,
    declares it as container port "runners", and its Service exposes it
    next to the API port."""
    p = []
    c = container(objs, "Deployment", "coordinator", "coordinator")
    env = env_map(objs, c)
    want = f"0.0.0.0:{COORDINATOR_RUNNER_PORT}"
    if env.get("TESTRUNNER_RUNNER_LISTEN") != want:
        p.append(f"coordinator TESTRUNNER_RUNNER_LISTEN is {env.get('TESTRUNNER_RUNNER_LISTEN')!r}, want {want}")
    if env.get("TESTRUNNER_LISTEN") and env.get("TESTRUNNER_RUNNER_LISTEN") \
            and listen_port(env["TESTRUNNER_LISTEN"]) == listen_port(env["TESTRUNNER_RUNNER_LISTEN"]):
        p.append("coordinator TESTRUNNER_LISTEN and TESTRUNNER_RUNNER_LISTEN share a port")
    nice = env.get("TESTRUNNER_API_NICE")
    if nice is not None and not (str(nice).isdigit() and int(nice) in API_NICE_RANGE):
        p.append(f"coordinator TESTRUNNER_API_NICE {nice!r} is not 0..19")
    declared = {pp.get("name"): pp for pp in c.get("ports") or []}
    rp = declared.get(RUNNER_PORT_NAME)
    if not rp or rp.get("containerPort") != COORDINATOR_RUNNER_PORT or rp.get("protocol", "TCP") != "TCP":
        p.append(f"coordinator does not declare TCP containerPort {COORDINATOR_RUNNER_PORT} "
                 f"named {RUNNER_PORT_NAME!r} (got {rp})")
    svcs = find(objs, "Service", "coordinator")
    if len(svcs) != 1:
        return p + [f"expected one Service coordinator, found {len(svcs)}"]
    by_port = {pp["port"]: pp for pp in svcs[0]["spec"]["ports"]}
    for port, name in ((COORDINATOR_PORT, "api"), (COORDINATOR_RUNNER_PORT, RUNNER_PORT_NAME)):
        sp = by_port.get(port)
        if not sp:
            p.append(f"Service coordinator does not expose port {port}")
            continue
        if sp.get("name") != name:
            p.append(f"Service coordinator port {port} is named {sp.get('name')!r}, want {name!r}")
        if container_port(c, sp.get("targetPort", port)) != port:
            p.append(f"Service coordinator port {port} targets {sp.get('targetPort')!r}, "
                     f"not the coordinator's port {port}")
    return p


def check_namespace(objs) -> list[str]:
    nss = find(objs, "Namespace")
    if len(nss) != 1:
        return [f"expected one Namespace, found {len(nss)}"]
    ns = nss[0]["metadata"]["name"]
    return [
        f"{o['kind']}/{o['metadata']['name']} in namespace {o['metadata'].get('namespace')!r}, want {ns!r}"
        for o in objs
        if namespaced(o) and o["metadata"].get("namespace") != ns
    ]


def check_labels(objs) -> list[str]:
    p = []
    for o in objs:
        if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") != "testrunner":
            p.append(f"{o['kind']}/{o['metadata']['name']} lacks app.kubernetes.io/part-of")
    for w in workloads(objs):
        sel = (w["spec"].get("selector") or {}).get("matchLabels") or {}
        if not selector_matches(w["spec"].get("selector"), pod_labels(w)):
            p.append(f"{w['kind']}/{w['metadata']['name']} selector does not match its pods")
        if "app.kubernetes.io/part-of" in sel:
            p.append(f"{w['kind']}/{w['metadata']['name']} selector includes a transformer label")
    return p


def check_images(objs, production: bool) -> list[str]:
    p = []
    for w in workloads(objs):
        for c in containers(w):
            img = c.get("image", "")
            name, tag, digest = split_image(img)
            where = f"{w['kind']}/{w['metadata']['name']}/{c['name']}"
            if name in ("testrunner-coordinator", "testrunner-runner"):
                p.append(f"{where}: image {img} was not set by the overlay")
            if not tag and not digest:
                p.append(f"{where}: image {img} has no tag")
            if production and (tag in ("latest", "dev") and not digest):
                p.append(f"{where}: production image {img} is not pinned")
    return p


def check_no_autoscaler(objs) -> list[str]:
    """Manual `kubectl scale` must stick: nothing else owns the replicas."""
    p = [f"{o['kind']}/{o['metadata']['name']} would fight kubectl scale"
         for o in objs if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    if "replicas" not in one(objs, "Deployment", "runner")["spec"]:
        p.append("runner Deployment has no replicas")
    return p


def check_keda(objs) -> list[str]:
    p = []
    # Runner pools (check_pools) bring ScaledObjects of their own.
    sos = find(objs, "ScaledObject", "runner")
    if len(sos) != 1:
        return [f"expected one ScaledObject named runner, found {len(sos)}"]
    so = sos[0]
    if find(objs, "HorizontalPodAutoscaler"):
        p.append("a HorizontalPodAutoscaler competes with KEDA")
    spec = so["spec"]
    allowed = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
               "cooldownPeriod", "idleReplicaCount", "advanced", "triggers", "fallback",
               "initialCooldownPeriod"}
    if set(spec) - allowed:
        p.append(f"ScaledObject has unknown spec fields {sorted(set(spec) - allowed)}")
    ref = spec.get("scaleTargetRef") or {}
    if ref.get("kind", "Deployment") != "Deployment" or not find(objs, "Deployment", ref.get("name")):
        p.append(f"ScaledObject targets {ref}, which is not a Deployment here")
    elif ref.get("name") != "runner":
        p.append(f"ScaledObject scales {ref.get('name')}, not the runners")
    if not (0 <= spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)):
        p.append("ScaledObject min/max replica counts out of order")
    runner = one(objs, "Deployment", "runner")
    if "replicas" in runner["spec"]:
        p.append("runner Deployment still sets replicas: kubectl apply would fight the autoscaler")
    slots = env_map(objs, container(objs, "Deployment", "runner", "runner")).get("TESTRUNNER_SLOTS")
    prom = [t for t in spec.get("triggers") or [] if t.get("type") == "prometheus"]
    if not prom:
        p.append("ScaledObject has no prometheus trigger")
    for t in prom:
        md = t.get("metadata") or {}
        if any(not isinstance(v, str) for v in md.values()):
            p.append("ScaledObject trigger metadata values must all be strings")
        if "testrunner_tests_queued" not in md.get("query", ""):
            p.append("prometheus trigger does not read testrunner_tests_queued")
        elif 'testrunner_tests_queued{selector=""}' not in md.get("query", ""):
            p.append("the default pool's trigger must read the queue without a selector "
                     '(testrunner_tests_queued{selector=""}), not every pool\'s')
        if not md.get("serverAddress", "").startswith("http"):
            p.append("prometheus trigger has no serverAddress")
        if md.get("threshold") != str(slots):
            p.append(f"trigger threshold {md.get('threshold')!r} != TESTRUNNER_SLOTS {slots!r}")
    return p


# The runners' `--label` syntax (testrunner_content::label): key=value,
# each 1 to 63 of A-Z a-z 0-9 . _ -.
LABEL_PART = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


def check_pools(objs) -> list[str]:
    """Every extra runner pool (a runner Deployment with TESTRUNNER_LABELS)
    has valid labels, reaches the coordinator like the default pool, is
    admitted to the runner port, and scales with a ScaledObject of its own
    on exactly its selector's queue."""
    p = []
    default_env = env_map(objs, container(objs, "Deployment", "runner", "runner"))
    slots = default_env.get("TESTRUNNER_SLOTS")
    pools = []
    for d in find(objs, "Deployment"):
        if d["metadata"]["name"] == "runner" or not any(c["name"] == "runner" for c in containers(d)):
            continue
        env = env_map(objs, container(objs, "Deployment", d["metadata"]["name"], "runner"))
        if "TESTRUNNER_LABELS" in env:
            pools.append((d, env))
    if not pools:
        return ["no runner pool (a runner Deployment with TESTRUNNER_LABELS)"]
    for d, env in pools:
        name = d["metadata"]["name"]
        labels = {}
        for entry in str(env["TESTRUNNER_LABELS"]).split(","):
            key, _, value = entry.partition("=")
            if not (LABEL_PART.match(key) and LABEL_PART.match(value)) or key in labels:
                p.append(f"{name}: label {entry!r} breaks the runners' --label rule")
            labels[key] = value
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        if env.get("TESTRUNNER_COORDINATOR") != default_env.get("TESTRUNNER_COORDINATOR"):
            p.append(f"{name} connects to {env.get('TESTRUNNER_COORDINATOR')!r}, not where the default pool does")
        if "replicas" in d["spec"]:
            p.append(f"{name} sets replicas: kubectl apply would fight its autoscaler")
        sos = [so for so in find(objs, "ScaledObject")
               if (so["spec"].get("scaleTargetRef") or {}).get("name") == name]
        if len(sos) != 1:
            p.append(f"{name}: expected one ScaledObject, found {len(sos)}")
            continue
        for t in sos[0]["spec"].get("triggers") or []:
            md = t.get("metadata") or {}
            query = md.get("query", "")
            if f'testrunner_tests_queued{{selector="{selector}"}}' not in query:
                p.append(f"{name}: trigger does not read its own queue "
                         f'testrunner_tests_queued{{selector="{selector}"}}: {query!r}')
            if md.get("threshold") != str(slots):
                p.append(f"{name}: trigger threshold {md.get('threshold')!r} != TESTRUNNER_SLOTS {slots!r}")
        admitted = False
        for np in find(objs, "NetworkPolicy"):
            if not selector_matches(np["spec"].get("podSelector"), pod_labels(one(objs, "Deployment", "coordinator"))):
                continue
            for rule in np["spec"].get("ingress") or []:
                ports = {pp.get("port") for pp in rule.get("ports") or []}
                if COORDINATOR_RUNNER_PORT not in ports:
                    continue
                for peer in rule.get("from") or []:
                    if "podSelector" in peer and "namespaceSelector" not in peer \
                            and selector_matches(peer["podSelector"], pod_labels(d)):
                        admitted = True
        if not admitted:
            p.append(f"no NetworkPolicy admits {name}'s pods to coordinator port {COORDINATOR_RUNNER_PORT}")
    return p


def check_dev_postgres(objs) -> list[str]:
    p = []
    sts = find(objs, "StatefulSet", "postgres")
    if len(sts) != 1:
        return ["dev has no postgres StatefulSet"]
    sts = sts[0]
    if not sts["spec"].get("volumeClaimTemplates"):
        p.append("postgres StatefulSet has no volumeClaimTemplates (data would not persist)")
    pg = containers(sts)[0]
    env = env_map(objs, pg)
    url = urlparse(secret_value(objs, "testrunner-secrets", "database-url"))
    if url.scheme not in ("postgres", "postgresql"):
        p.append(f"dev database-url scheme {url.scheme}")
    svcs = find(objs, "Service", url.hostname)
    if not svcs or not selector_matches({"matchLabels": svcs[0]["spec"]["selector"]}, pod_labels(sts)):
        p.append(f"dev database-url host {url.hostname} is not a Service selecting postgres")
    elif url.port not in {pp["port"] for pp in svcs[0]["spec"]["ports"]}:
        p.append(f"dev database-url port {url.port} is not on Service {url.hostname}")
    if sts["spec"].get("serviceName") not in {s["metadata"]["name"] for s in find(objs, "Service")}:
        p.append("postgres StatefulSet serviceName is not a Service")
    if url.username != env.get("POSTGRES_USER"):
        p.append("dev database-url user differs from POSTGRES_USER")
    if url.path.lstrip("/") != env.get("POSTGRES_DB"):
        p.append("dev database-url database differs from POSTGRES_DB")
    pw = env.get("POSTGRES_PASSWORD")
    if not (isinstance(pw, tuple) and url.password == secret_value(objs, pw[1], pw[2])):
        p.append("dev database-url password differs from the Postgres password")
    pols = [n for n in find(objs, "NetworkPolicy") if selector_matches(n["spec"]["podSelector"], pod_labels(sts))]
    if not pols:
        p.append("no NetworkPolicy protects the dev Postgres")
    return p


def check_production_external_db(objs) -> list[str]:
    p = []
    if find(objs, "StatefulSet"):
        p.append("production renders a StatefulSet (in-cluster database)")
    if any("postgres" in o["metadata"]["name"] for o in objs):
        p.append("production renders postgres objects")
    url = urlparse(secret_value(objs, "testrunner-secrets", "database-url"))
    if url.scheme not in ("postgres", "postgresql"):
        p.append(f"production database-url scheme {url.scheme}")
    if find(objs, "Service", url.hostname or ""):
        p.append(f"production database-url host {url.hostname} is an in-cluster Service")
    if "sslmode=require" not in url.query and "sslmode=verify" not in url.query:
        p.append("production database-url does not require TLS (sslmode)")
    # Several coordinators need a shared Postgres (checked above) and a PDB
    # that lets a drain evict them one at a time.
    coord = one(objs, "Deployment", "coordinator")
    if coord["spec"].get("replicas", 1) < 2:
        p.append("production runs fewer than two coordinators")
    coord_pdbs = [
        b for b in find(objs, "PodDisruptionBudget")
        if selector_matches(b["spec"].get("selector"), pod_labels(coord))
    ]
    if len(coord_pdbs) != 1 or coord_pdbs[0]["spec"].get("maxUnavailable") != 1:
        p.append("production coordinators need one PDB with maxUnavailable: 1")
    return p


def check_tls(objs) -> list[str]:
    p = []
    coord = one(objs, "Deployment", "coordinator")
    c = container(objs, "Deployment", "coordinator", "coordinator")
    env = env_map(objs, c)
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod_spec(coord).get("volumes") or []}

    def file_backed(cont_mounts, path, where):
        d, f = os.path.split(path)
        v = vols_of(where).get(cont_mounts.get(d))
        if not v or "secret" not in v:
            p.append(f"{where}: {path} is not in a mounted Secret")
            return
        keys = [i["path"] for i in v["secret"].get("items") or []]
        if keys and f not in keys:
            p.append(f"{where}: Secret volume does not project {f}")

    def vols_of(where):
        return vols if where == "coordinator" else rvols

    runner = one(objs, "Deployment", "runner")
    rc = container(objs, "Deployment", "runner", "runner")
    rvols = {v["name"]: v for v in pod_spec(runner).get("volumes") or []}
    rmounts = {m["mountPath"]: m["name"] for m in rc.get("volumeMounts") or []}
    for var in ("TESTRUNNER_TLS_CERT", "TESTRUNNER_TLS_KEY"):
        if not env.get(var):
            p.append(f"coordinator has no {var}")
        else:
            file_backed(mounts, env[var], "coordinator")
    renv = env_map(objs, rc)
    if not renv.get("TESTRUNNER_TLS_CA"):
        p.append("runner has no TESTRUNNER_TLS_CA")
    else:
        file_backed(rmounts, renv["TESTRUNNER_TLS_CA"], "runner")
    p += check_runner_reaches_coordinator(objs, scheme="https")
    ns = coord["metadata"]["namespace"]
    for cert in find(objs, "Certificate"):
        names = set(cert["spec"].get("dnsNames") or [])
        for want in ("coordinator", f"coordinator.{ns}.svc"):
            if want not in names:
                p.append(f"Certificate {cert['metadata']['name']} lacks dnsName {want}")
    for ing in find(objs, "Ingress"):
        if (ing["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/backend-protocol") != "HTTPS":
            p.append("Ingress still speaks plain HTTP to a TLS backend")
    return p


def check_runner_cache(objs) -> list[str]:
    """The runner's workspace cache is a volume mounted at
    TESTRUNNER_CACHE_DIR, and TESTRUNNER_CACHE_BYTES fits it (at most 90%,
    leaving room for set-up products and partial fetches)."""
    c = container(objs, "Deployment", "runner", "runner")
    env = env_map(objs, c)
    cache_dir, cache_bytes = env.get("TESTRUNNER_CACHE_DIR"), env.get("TESTRUNNER_CACHE_BYTES")
    if not cache_dir or not cache_bytes:
        return ["runner has no TESTRUNNER_CACHE_DIR / TESTRUNNER_CACHE_BYTES"]
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    if cache_dir not in mounts:
        return [f"runner: no volume mounted at TESTRUNNER_CACHE_DIR {cache_dir}"]
    spec = pod_spec(one(objs, "Deployment", "runner"))
    vol = next((v for v in spec.get("volumes") or [] if v["name"] == mounts[cache_dir]), None)
    if vol is None:
        return [f"runner: volume {mounts[cache_dir]} missing"]
    if "emptyDir" in vol and vol["emptyDir"] is not None:
        size = (vol["emptyDir"] or {}).get("sizeLimit")
    elif "ephemeral" in vol:
        size = vol["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
    elif "persistentVolumeClaim" in vol:
        return []
    else:
        return [f"runner: cache volume {vol['name']} is neither emptyDir nor a claim"]
    if size is None:
        return ["runner: the cache emptyDir has no sizeLimit"]
    if int(cache_bytes) > 0.9 * quantity(size):
        return [f"runner: TESTRUNNER_CACHE_BYTES={cache_bytes} does not fit its {size} volume"]
    return []


ALL_COMMON = [
    check_resources,
    check_security,
    check_pdb,
    check_references,
    check_services,
    check_shared_token,
    check_token_out_of_tests,
    check_namespace,
    check_labels,
    check_runner_probes,
    check_drain_grace,
    check_slots_fit_cpu,
    check_coordinator_runner_port,
    check_runner_cache,
]
