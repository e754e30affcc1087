"""The Python kustomize renderer against expected output and, where a real
`kubectl` (kustomize v5) is on PATH, against kubectl's own rendering."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

import yaml  # noqa: E402

import compare_renders  # noqa: E402
import kustomize_render as kr  # noqa: E402


def _kubectl_kustomize_works() -> bool:
    if not shutil.which("kubectl"):
        return False
    try:
        out = subprocess.run(["kubectl", "version", "--client"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Kustomize Version: v5" in out.stdout


KUBECTL = _kubectl_kustomize_works()

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 2
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
      - name: c
        image: foo
        env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: C, value: "2"}]
        volumeMounts: [{name: x, mountPath: /x}]
        readinessProbe: {grpc: {port: 1}, periodSeconds: 5}
      - name: d
        image: localhost:5000/team/bar:1.0
      volumes: [{name: x, emptyDir: {}}]
"""


class RenderCase(unittest.TestCase):
    def render(self, files: dict, top: str = "ov"):
        """Write files into a temp tree, render `top` with both renderers."""
        with tempfile.TemporaryDirectory() as tmp:
            for path, text in files.items():
                full = os.path.join(tmp, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as fh:
                    fh.write(textwrap.dedent(text))
            objs = kr.render_dir(os.path.join(tmp, top))
            if KUBECTL:
                mine = os.path.join(tmp, "mine.yaml")
                theirs = os.path.join(tmp, "kubectl.yaml")
                with open(mine, "w", encoding="utf-8") as fh:
                    fh.write(kr.dump(objs))
                res = subprocess.run(["kubectl", "kustomize", os.path.join(tmp, top)],
                                     capture_output=True, text=True, timeout=120)
                self.assertEqual(res.returncode, 0, res.stderr)
                with open(theirs, "w", encoding="utf-8") as fh:
                    fh.write(res.stdout)
                self.assertEqual(compare_renders.compare(mine, theirs), [])
            return objs

    def render_fails(self, files: dict, top: str = "ov"):
        with tempfile.TemporaryDirectory() as tmp:
            for path, text in files.items():
                full = os.path.join(tmp, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as fh:
                    fh.write(textwrap.dedent(text))
            with self.assertRaises(kr.RenderError):
                kr.render_dir(os.path.join(tmp, top))
            if KUBECTL:
                res = subprocess.run(["kubectl", "kustomize", os.path.join(tmp, top)],
                                     capture_output=True, text=True, timeout=120)
                self.assertNotEqual(res.returncode, 0, "kubectl accepted what the renderer refuses")


class StrategicMerge(RenderCase):
    def test_list_order_merge_keys_and_null_deletion(self):
        objs = self.render({
            "base/kustomization.yaml": "namespace: ns\nresources: [d.yaml]\n",
            "base/d.yaml": DEPLOYMENT,
            "ov/kustomization.yaml": """
                resources: [../base]
                patches:
                - patch: |
                    apiVersion: apps/v1
                    kind: Deployment
                    metadata: {name: d}
                    spec:
                      template:
                        spec:
                          containers:
                          - name: d
                            image: baz
                          - name: c
                            env: [{name: C, value: "3"}, {name: A, value: "9"}, {name: B, $patch: delete}]
                            volumeMounts: [{name: y, mountPath: /y}]
                            readinessProbe: {grpc: null, tcpSocket: {port: 1}}
                          volumes: [{name: y, emptyDir: {}}]
                """,
        })
        (d,) = objs
        cs = d["spec"]["template"]["spec"]["containers"]
        self.assertEqual([c["name"] for c in cs], ["d", "c"])
        c = cs[1]
        self.assertEqual(c["env"], [{"name": "C", "value": "3"}, {"name": "A", "value": "9"}])
        self.assertEqual([m["mountPath"] for m in c["volumeMounts"]], ["/y", "/x"])
        self.assertEqual(c["readinessProbe"], {"tcpSocket": {"port": 1}, "periodSeconds": 5})
        self.assertEqual(d["metadata"]["namespace"], "ns")

    def test_service_ports_merge_on_port_and_resource_delete(self):
        objs = self.render({
            "ov/kustomization.yaml": """
                resources: [s.yaml]
                patches:
                - patch: |
                    apiVersion: v1
                    kind: Service
                    metadata: {name: s}
                    spec:
                      ports: [{port: 80, targetPort: web}]
                - patch: |
                    apiVersion: v1
                    kind: ConfigMap
                    metadata: {name: gone}
                    $patch: delete
            """,
            "ov/s.yaml": """
                apiVersion: v1
                kind: Service
                metadata: {name: s}
                spec:
                  selector: {a: b}
                  ports: [{port: 80, targetPort: 8080, name: http}, {port: 443, name: https}]
                ---
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: gone}
            """,
        })
        self.assertEqual([o["kind"] for o in objs], ["Service"])
        self.assertEqual(objs[0]["spec"]["ports"][0], {"port": 80, "targetPort": "web", "name": "http"})
        self.assertEqual(len(objs[0]["spec"]["ports"]), 2)

    def test_unmatched_patch_without_target_fails(self):
        self.render_fails({
            "ov/kustomization.yaml": """
                resources: [cm.yaml]
                patches:
                - patch: |
                    apiVersion: v1
                    kind: ConfigMap
                    metadata: {name: other}
                    data: {a: b}
            """,
            "ov/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
        })


class Json6902AndTargets(RenderCase):
    def test_ops_and_regex_targets(self):
        objs = self.render({
            "ov/kustomization.yaml": """
                resources: [d.yaml]
                patches:
                - target: {group: apps, version: v1, kind: Deployment, name: "d.*"}
                  patch: |-
                    - op: remove
                      path: /spec/replicas
                    - op: add
                      path: /metadata/annotations
                      value: {a/b: c}
                    - op: add
                      path: /metadata/annotations/x~1y
                      value: z
                    - op: replace
                      path: /spec/template/spec/containers/0/image
                      value: qux
                    - op: add
                      path: /spec/template/spec/containers/0/env/-
                      value: {name: D, value: "4"}
                - target: {kind: Ingress}
                  patch: |-
                    - op: add
                      path: /metadata/annotations
                      value: {never: applied}
            """,
            "ov/d.yaml": DEPLOYMENT,
        })
        (d,) = objs
        self.assertNotIn("replicas", d["spec"])
        self.assertEqual(d["metadata"]["annotations"], {"a/b": "c", "x/y": "z"})
        c = d["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["image"], "qux")
        self.assertEqual(c["env"][-1], {"name": "D", "value": "4"})


class Transformers(RenderCase):
    def test_images(self):
        objs = self.render({
            "ov/kustomization.yaml": """
                resources: [d.yaml]
                images:
                - name: foo
                  newName: registry.example.com/foo
                  newTag: "2.0"
                - name: localhost:5000/team/bar
                  digest: sha256:0123456789012345678901234567890123456789012345678901234567890123
            """,
            "ov/d.yaml": DEPLOYMENT,
        })
        cs = objs[0]["spec"]["template"]["spec"]["containers"]
        self.assertEqual(cs[0]["image"], "registry.example.com/foo:2.0")
        self.assertEqual(cs[1]["image"], "localhost:5000/team/bar@sha256:" + "0123456789" * 6 + "0123")

    def test_labels_and_namespace(self):
        objs = self.render({
            "ov/kustomization.yaml": """
                namespace: prod
                labels:
                - pairs: {team: x}
                  includeTemplates: true
                - pairs: {tier: web}
                resources: [r.yaml]
            """,
            "ov/r.yaml": """
                apiVersion: v1
                kind: Namespace
                metadata: {name: whatever}
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: ClusterRole
                metadata: {name: cr}
                rules: []
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: RoleBinding
                metadata: {name: rb, namespace: elsewhere}
                roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cr}
                subjects: [{kind: ServiceAccount, name: sa}, {kind: ServiceAccount, name: default}]
                ---
                apiVersion: batch/v1
                kind: CronJob
                metadata: {name: cj}
                spec:
                  schedule: "* * * * *"
                  jobTemplate:
                    spec:
                      template:
                        spec:
                          restartPolicy: Never
                          containers: [{name: c, image: foo}]
                ---
                apiVersion: apps/v1
                kind: StatefulSet
                metadata: {name: s}
                spec:
                  serviceName: s
                  selector: {matchLabels: {a: b}}
                  template:
                    metadata: {labels: {a: b}}
                    spec: {containers: [{name: c, image: foo}]}
                  volumeClaimTemplates:
                  - metadata: {name: data}
                    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
            """,
        })
        by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
        self.assertIn(("Namespace", "prod"), by)
        self.assertNotIn("namespace", by[("ClusterRole", "cr")]["metadata"])
        rb = by[("RoleBinding", "rb")]
        self.assertEqual(rb["metadata"]["namespace"], "prod")
        self.assertNotIn("namespace", rb["subjects"][0])
        self.assertEqual(rb["subjects"][1]["namespace"], "prod")
        sts = by[("StatefulSet", "s")]
        self.assertEqual(sts["spec"]["selector"], {"matchLabels": {"a": "b"}})
        self.assertEqual(sts["spec"]["template"]["metadata"]["labels"], {"a": "b", "team": "x"})
        self.assertEqual(sts["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"], {"team": "x"})
        cj = by[("CronJob", "cj")]["spec"]["jobTemplate"]
        self.assertEqual(cj["spec"]["template"]["metadata"]["labels"], {"team": "x"})
        self.assertEqual(by[("ClusterRole", "cr")]["metadata"]["labels"], {"team": "x", "tier": "web"})

    def test_component_runs_before_the_kustomizations_own_patches(self):
        objs = self.render({
            "comp/kustomization.yaml": """
                apiVersion: kustomize.config.k8s.io/v1alpha1
                kind: Component
                resources: [cm.yaml]
                patches:
                - target: {kind: Deployment, name: d}
                  patch: |-
                    - op: remove
                      path: /spec/replicas
            """,
            "comp/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-component}\n",
            "ov/kustomization.yaml": """
                namespace: nsx
                resources: [d.yaml]
                components: [../comp]
                patches:
                - patch: |
                    apiVersion: apps/v1
                    kind: Deployment
                    metadata: {name: d}
                    spec: {replicas: 7}
            """,
            "ov/d.yaml": DEPLOYMENT,
        })
        by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
        self.assertEqual(by[("Deployment", "d")]["spec"]["replicas"], 7)
        self.assertEqual(by[("ConfigMap", "from-component")]["metadata"]["namespace"], "nsx")


class GoYamlQuirks(RenderCase):
    def test_unquoted_y_is_a_boolean_to_kustomize(self):
        self.render_fails({
            "ov/kustomization.yaml": "labels:\n- pairs: {tier: y}\nresources: [cm.yaml]\n",
            "ov/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
        })


class Refusals(unittest.TestCase):
    def test_unsupported_fields_are_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "kustomization.yaml"), "w") as fh:
                fh.write("configMapGenerator:\n- name: x\n  literals: [a=b]\n")
            with self.assertRaises(kr.RenderError):
                kr.render_dir(tmp)

    def test_duplicate_resources_are_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "kustomization.yaml"), "w") as fh:
                fh.write("resources: [a.yaml, b.yaml]\n")
            for n in ("a", "b"):
                with open(os.path.join(tmp, f"{n}.yaml"), "w") as fh:
                    fh.write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n")
            with self.assertRaises(kr.RenderError):
                kr.render_dir(tmp)


class RealOverlays(unittest.TestCase):
    """The shipped overlays, rendered by kubectl too when it is available."""

    @unittest.skipUnless(KUBECTL, "kubectl with kustomize v5 not on PATH")
    def test_shipped_targets_match_kubectl(self):
        sys.path.insert(0, HERE)
        import checks

        for name, rel in checks.TARGETS.items():
            with self.subTest(target=name), tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(checks.DEPLOY, rel)
                mine = os.path.join(tmp, "mine.yaml")
                theirs = os.path.join(tmp, "kubectl.yaml")
                with open(mine, "w") as fh:
                    fh.write(kr.dump(kr.render_dir(path)))
                res = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True, timeout=120)
                self.assertEqual(res.returncode, 0, res.stderr)
                with open(theirs, "w") as fh:
                    fh.write(res.stdout)
                self.assertEqual(compare_renders.compare(mine, theirs), [])

    def test_dump_round_trips(self):
        objs = kr.render_dir(os.path.join(os.path.dirname(HERE), "k8s/overlays/production"))
        self.assertEqual(list(yaml.safe_load_all(kr.dump(objs))), objs)


if __name__ == "__main__":
    unittest.main(verbosity=2)
