#!/usr/bin/env python3
"""A small, strict renderer for the subset of kustomize that deploy/k8s uses.

Why it exists: `kubectl kustomize` is not installable from the package
registries this project can reach (Debian's kubernetes-client is 1.20 with
kustomize v2, which lacks `patches`, `labels` and components). validate.sh
renders every overlay with this module and, wherever a real `kubectl` with
kustomize v5 is on PATH, renders again with it and fails on any difference,
so the subset below is checked against the real thing, not just written.

Supported (anything else is an error, never silently ignored):
  kustomization / component fields: resources (files, multi-document files,
  directories holding a kustomization), components, namespace, labels (pairs,
  includeSelectors: false, includeTemplates), patches (path or inline patch;
  strategic merge with or without target; JSON 6902 with target), images
  (name, newName, newTag, digest).
Transformer order follows kustomize v5: resources, then components, then
patches, namespace, labels, images.

Usage: kustomize_render.py DIR [-o OUT.yaml]
"""

from __future__ import annotations

import copy
import os
import re
import sys
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "components",
    "namespace",
    "labels",
    "patches",
    "images",
}

# Strategic merge: merge keys of the list fields this project patches.
# Lists not named here are replaced wholesale, as kustomize does for lists
# without a patchMergeKey.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}
# `ports` merges on containerPort inside containers, on port in a Service.
PORTS_KEY_CONTAINER = "containerPort"
PORTS_KEY_SERVICE = "port"

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "RuntimeClass",
    "ClusterIssuer",
}

# kustomize's legacy output order.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]

TEMPLATE_KINDS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "ReplicationController"}


class RenderError(Exception):
    pass


# ---------------------------------------------------------------- loading


def _load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise RenderError(f"{path}: every document needs apiVersion and kind")
        if not d.get("metadata", {}).get("name"):
            raise RenderError(f"{path}: {d['kind']} without metadata.name")
    return docs


def _find_kustomization(directory: str) -> str:
    for name in KUSTOMIZATION_FILES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise RenderError(f"{directory}: no kustomization file")


def _load_kustomization(directory: str) -> dict:
    path = _find_kustomization(directory)
    with open(path, encoding="utf-8") as fh:
        k = yaml.safe_load(fh) or {}
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise RenderError(f"{path}: unsupported kustomization fields {sorted(unknown)}")
    return k


def _res_id(r: dict) -> tuple:
    group = r["apiVersion"].split("/")[0] if "/" in r["apiVersion"] else ""
    return (group, r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"])


def _add_resources(acc: list[dict], new: list[dict], where: str) -> None:
    seen = {_res_id(r) for r in acc}
    for r in new:
        rid = _res_id(r)
        if rid in seen:
            raise RenderError(f"{where}: duplicate resource {rid}")
        seen.add(rid)
        acc.append(r)


# ---------------------------------------------------------------- entry points


def render_dir(directory: str) -> list[dict]:
    """Render the kustomization in `directory` into a list of objects."""
    return sort_resources(_build(os.path.abspath(directory), expect_kind="Kustomization"))


def _build(directory: str, expect_kind: str, acc: list[dict] | None = None) -> list[dict]:
    k = _load_kustomization(directory)
    kind = k.get("kind", "Kustomization")
    if kind != expect_kind:
        raise RenderError(f"{directory}: expected kind {expect_kind}, found {kind}")
    resources: list[dict] = [] if acc is None else acc
    for entry in k.get("resources", []) or []:
        path = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(path):
            _add_resources(resources, _build(path, "Kustomization"), path)
        elif os.path.isfile(path):
            _add_resources(resources, _load_docs(path), path)
        else:
            raise RenderError(f"{directory}: resource {entry!r} does not exist")
    for entry in k.get("components", []) or []:
        path = os.path.normpath(os.path.join(directory, entry))
        if not os.path.isdir(path):
            raise RenderError(f"{directory}: component {entry!r} is not a directory")
        resources = _build(path, "Component", acc=resources)
    _transform(directory, k, resources)
    return resources


def _transform(directory: str, k: dict, resources: list[dict]) -> None:
    for p in k.get("patches", []) or []:
        _apply_patch(directory, p, resources)
    if k.get("namespace"):
        _set_namespace(_go_str(k["namespace"], directory), resources)
    for lab in k.get("labels", []) or []:
        _apply_labels(directory, lab, resources)
    for img in k.get("images", []) or []:
        _apply_image(directory, img, resources)


# ---------------------------------------------------------------- patches


def _target_matches(target: dict, r: dict) -> bool:
    unknown = set(target) - {"kind", "name", "namespace", "group", "version"}
    if unknown:
        raise RenderError(f"unsupported patch target selectors {sorted(unknown)}")
    api = r["apiVersion"]
    group, version = (api.split("/", 1) if "/" in api else ("", api))
    if "kind" in target and target["kind"] != r["kind"]:
        return False
    if "group" in target and target["group"] != group:
        return False
    if "version" in target and target["version"] != version:
        return False
    if "name" in target and not re.fullmatch(target["name"], r["metadata"]["name"]):
        return False
    if "namespace" in target and not re.fullmatch(
        target["namespace"], r["metadata"].get("namespace", "")
    ):
        return False
    return True


def _apply_patch(directory: str, p: dict, resources: list[dict]) -> None:
    unknown = set(p) - {"path", "patch", "target"}
    if unknown:
        raise RenderError(f"{directory}: unsupported patch fields {sorted(unknown)}")
    if ("path" in p) == ("patch" in p):
        raise RenderError(f"{directory}: a patch needs exactly one of path or patch")
    if "path" in p:
        with open(os.path.join(directory, p["path"]), encoding="utf-8") as fh:
            text = fh.read()
    else:
        text = p["patch"]
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    target = p.get("target")
    if len(docs) == 1 and isinstance(docs[0], list):
        if not target:
            raise RenderError(f"{directory}: a JSON 6902 patch needs a target")
        # Like kustomize: a patch selected by `target` may match nothing.
        for r in [r for r in resources if _target_matches(target, r)]:
            _json6902(r, docs[0])
        return
    for doc in docs:
        if not isinstance(doc, dict):
            raise RenderError(f"{directory}: patch is neither a map nor a JSON 6902 list")
        if target:
            hits = [r for r in resources if _target_matches(target, r)]
        else:
            want = {
                "kind": doc.get("kind"),
                "name": re.escape(doc.get("metadata", {}).get("name", "")),
            }
            if doc.get("metadata", {}).get("namespace"):
                want["namespace"] = re.escape(doc["metadata"]["namespace"])
            hits = [r for r in resources if _target_matches(want, r)]
        if not hits and not target:
            raise RenderError(f"{directory}: strategic merge patch matches nothing: {doc.get('kind')}/"
                              f"{doc.get('metadata', {}).get('name')}")
        for r in hits:
            if doc.get("$patch") == "delete":
                resources.remove(r)
                continue
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
            if target:
                body.get("metadata", {}).pop("name", None)
            merged = strategic_merge(r, body, parent_kind=r["kind"])
            r.clear()
            r.update(merged)


def strategic_merge(dst: Any, patch: Any, parent_kind: str = "", key: str = "") -> Any:
    """Strategic merge of `patch` into `dst` (a new object is returned)."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if not isinstance(dst, dict):
            dst = {}
        out = copy.deepcopy(dst)
        for k, v in patch.items():
            if k.startswith("$"):
                raise RenderError(f"unsupported directive {k}")
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, parent_kind, k)
            else:
                out[k] = _strip_nulls(copy.deepcopy(v))
        return out
    if isinstance(patch, list):
        mkey = MERGE_KEYS.get(key)
        if key == "ports":
            mkey = PORTS_KEY_SERVICE if parent_kind == "Service" else PORTS_KEY_CONTAINER
        if mkey is None or not isinstance(dst, list) or not all(isinstance(x, dict) for x in patch):
            return copy.deepcopy(patch)
        # kustomize (kyaml) order: patch items in patch order, then the
        # destination items the patch did not name, in their order.
        by_key = {item.get(mkey): item for item in dst if isinstance(item, dict)}
        out, named = [], set()
        for item in patch:
            kval = item.get(mkey)
            if kval is None:
                raise RenderError(f"list {key}: patch item without merge key {mkey}")
            named.add(kval)
            if item.get("$patch") == "delete":
                continue
            if kval in by_key:
                out.append(strategic_merge(by_key[kval], item, parent_kind, key))
            else:
                out.append(_strip_nulls(copy.deepcopy(item)))
        for item in dst:
            if not (isinstance(item, dict) and item.get(mkey) in named):
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _strip_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_strip_nulls(x) for x in v]
    return v


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json6902(r: dict, ops: list[dict]) -> None:
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op["path"])
        parent: Any = r
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if kind in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif kind == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if kind == "replace" and last not in parent:
                    raise RenderError(f"replace: {op['path']} does not exist")
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                if last not in parent:
                    raise RenderError(f"remove: {op['path']} does not exist")
                del parent[last]
        else:
            raise RenderError(f"unsupported JSON 6902 op {kind!r}")


# ---------------------------------------------------------------- namespace, labels, images


def _go_str(v: Any, where: str) -> str:
    """A string field as kustomize (Go, YAML 1.1) reads it: y/n/yes/on/true...
    are booleans there and rejected, even where PyYAML reads a string."""
    if not isinstance(v, str) or v in ("y", "Y", "n", "N"):
        raise RenderError(f"{where}: {v!r} is not a string to kustomize (quote it)")
    return v


def _set_namespace(ns: str, resources: list[dict]) -> None:
    for r in resources:
        if r["kind"] == "Namespace":
            r["metadata"]["name"] = ns
        elif r["kind"] not in CLUSTER_SCOPED:
            r["metadata"]["namespace"] = ns
        # kustomize's default (setRoleBindingSubjects: defaultOnly): only
        # subjects naming the ServiceAccount "default" follow the namespace.
        if r["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for s in r.get("subjects", []) or []:
                if s.get("kind") == "ServiceAccount" and s.get("name") == "default":
                    s["namespace"] = ns


def _apply_labels(directory: str, lab: dict, resources: list[dict]) -> None:
    unknown = set(lab) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown or lab.get("includeSelectors"):
        raise RenderError(f"{directory}: labels supports pairs, includeTemplates and includeSelectors: false only")
    pairs = {_go_str(k, directory): _go_str(v, directory) for k, v in (lab.get("pairs") or {}).items()}

    def put(meta: dict) -> None:
        meta.setdefault("labels", {}).update(pairs)

    for r in resources:
        put(r["metadata"])
        if not lab.get("includeTemplates"):
            continue
        spec = r.get("spec") or {}
        if r["kind"] in TEMPLATE_KINDS and "template" in spec:
            put(spec["template"].setdefault("metadata", {}))
        if r["kind"] == "StatefulSet":
            for vct in spec.get("volumeClaimTemplates", []) or []:
                put(vct.setdefault("metadata", {}))
        if r["kind"] == "CronJob":
            jt = spec.get("jobTemplate", {})
            put(jt.setdefault("metadata", {}))
            put(jt.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {}))


def pod_specs(r: dict) -> list[dict]:
    """Pod specs inside a workload object (empty for other kinds)."""
    spec = r.get("spec") or {}
    if r["kind"] == "Pod":
        return [spec]
    if r["kind"] == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    if "template" in spec and isinstance(spec["template"], dict) and "spec" in spec["template"]:
        return [spec["template"]["spec"]]
    return []


def _split_image(image: str) -> tuple[str, str, str]:
    name, digest = (image.split("@", 1) + [""])[:2]
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def _apply_image(directory: str, img: dict, resources: list[dict]) -> None:
    unknown = set(img) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise RenderError(f"{directory}: unsupported image fields {sorted(unknown)}")
    for r in resources:
        for ps in pod_specs(r):
            for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
                name, tag, digest = _split_image(c.get("image", ""))
                if name != img["name"]:
                    continue
                name = img.get("newName", name)
                if "newTag" in img:
                    tag, digest = str(img["newTag"]), ""
                if "digest" in img:
                    tag, digest = "", img["digest"]
                c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


# ---------------------------------------------------------------- output


def sort_resources(resources: list[dict]) -> list[dict]:
    def key(r: dict) -> tuple:
        kind = r["kind"]
        if kind in ORDER_FIRST:
            rank = ORDER_FIRST.index(kind)
        elif kind in ORDER_LAST:
            rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
        else:
            rank = len(ORDER_FIRST)
        return (rank, kind, r["metadata"].get("namespace", ""), r["metadata"]["name"])

    return sorted(resources, key=key)


def dump(resources: list[dict]) -> str:
    return yaml.safe_dump_all(resources, sort_keys=True, default_flow_style=False)


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("directory")
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)
    try:
        text = dump(render_dir(args.directory))
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"kustomize_render: {e}", file=sys.stderr)
        return 1
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
