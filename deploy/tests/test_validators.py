"""The external validators validate.sh relies on really reject bad input
(so a green run is not a validator that accepts everything). Skipped when the
tools are not on PATH (validate.sh puts them there)."""

import os
import shutil
import subprocess
import tempfile
import textwrap
import unittest

DEPLOY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOOD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
      - name: c
        image: foo:1
        readinessProbe: {grpc: {port: 50051}}
"""


def run(cmd, text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(textwrap.dedent(text))
    try:
        return subprocess.run(cmd + [fh.name], capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(fh.name)


@unittest.skipUnless(shutil.which("kubernetes-validate"), "kubernetes-validate not on PATH")
class KubernetesValidate(unittest.TestCase):
    CMD = ["kubernetes-validate", "--strict", "-k", "1.33.0"]

    def test_accepts_valid(self):
        r = run(self.CMD, GOOD)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_rejects_unknown_field_in_strict_mode(self):
        r = run(self.CMD, GOOD.replace("image: foo:1", "image: foo:1\n        resorces: {}"))
        self.assertNotEqual(r.returncode, 0, r.stdout)

    def test_rejects_named_port_in_grpc_probe(self):
        r = run(self.CMD, GOOD.replace("port: 50051", "port: api"))
        self.assertNotEqual(r.returncode, 0, r.stdout)


KUBECTL = os.environ["KUBECTL"] if "KUBECTL" in os.environ else shutil.which("kubectl")


@unittest.skipUnless(KUBECTL, "no kubectl (validate.sh passes the one it uses as $KUBECTL)")
class KubectlKustomize(unittest.TestCase):
    """The renderer the property tests read from."""

    def kustomize(self, files: dict):
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in files.items():
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                    fh.write(textwrap.dedent(text))
            return subprocess.run([KUBECTL, "kustomize", tmp], capture_output=True, text=True, timeout=120)

    def test_is_kustomize_v5(self):
        r = subprocess.run([KUBECTL, "version", "--client"], capture_output=True, text=True, timeout=60)
        self.assertRegex(r.stdout, r"(?m)^Kustomize Version: v5\.")

    def test_applies_a_patch(self):
        r = self.kustomize({
            "kustomization.yaml": "namespace: ns\nresources: [d.yaml]\npatches:\n- path: p.yaml\n",
            "d.yaml": GOOD,
            "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 3}\n",
        })
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("replicas: 3", r.stdout)
        self.assertIn("namespace: ns", r.stdout)

    def test_rejects_patch_matching_nothing(self):
        r = self.kustomize({
            "kustomization.yaml": "resources: [d.yaml]\npatches:\n- path: p.yaml\n",
            "d.yaml": GOOD,
            "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\nspec: {replicas: 3}\n",
        })
        self.assertNotEqual(r.returncode, 0, r.stdout)


@unittest.skipUnless(shutil.which("check-jsonschema"), "check-jsonschema not on PATH")
class ComposeSchema(unittest.TestCase):
    CMD = ["check-jsonschema", "--builtin-schema", "vendor.compose-spec"]

    def test_rejects_unknown_service_key(self):
        r = run(self.CMD, "services:\n  a:\n    image: x\n    replicas_typo: 2\n")
        self.assertNotEqual(r.returncode, 0, r.stdout)

    def test_accepts_minimal(self):
        r = run(self.CMD, "services:\n  a:\n    image: x\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


@unittest.skipUnless(shutil.which("hadolint"), "hadolint not on PATH")
class Hadolint(unittest.TestCase):
    def test_flags_bad_dockerfile(self):
        with tempfile.NamedTemporaryFile("w", suffix=".Dockerfile", delete=False) as fh:
            fh.write("FROM debian\nRUN apt-get install curl\nCMD bash\n")
        try:
            r = subprocess.run(["hadolint", fh.name], capture_output=True, text=True, timeout=120)
        finally:
            os.unlink(fh.name)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("DL3006", r.stdout)  # untagged base image


if __name__ == "__main__":
    unittest.main(verbosity=2)
