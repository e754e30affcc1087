"""Dockerfiles, the repository-root .dockerignore and compose.yaml, checked offline.

Nothing here builds an image (no Docker engine): these are static checks of
what the files say, plus consistency with the Kubernetes manifests."""

import fnmatch
import os
import re
import shlex
import sys
import unittest
from urllib.parse import urlparse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY = os.path.dirname(HERE)
REPO = os.path.dirname(DEPLOY)
sys.path.insert(0, HERE)

import checks  # noqa: E402


def parse_dockerfile(path):
    """[(stage_name, base, [(INSTRUCTION, args)])] with continuations joined."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    logical, buf = [], ""
    for line in lines:
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages, args = [], {}
    for line in logical:
        instr, _, rest = line.strip().partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
            continue
        if instr == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None
            stages.append((name, base, []))
            continue
        stages[-1][2].append((instr, rest))
    return stages, args


def instrs(stage, kind):
    return [a for i, a in stage[2] if i == kind]


def env_of(stage):
    out = {}
    for a in instrs(stage, "ENV"):
        for tok in shlex.split(a):
            k, _, v = tok.partition("=")
            out[k] = v
    return out


def exposed(stage):
    """Ports of every EXPOSE in a stage (EXPOSE 1 2/tcp -> {"1", "2"})."""
    return {tok.split("/")[0] for a in instrs(stage, "EXPOSE") for tok in a.split()}


def copy_sources(stage):
    out = []
    for a in instrs(stage, "COPY"):
        toks = [t for t in a.split() if not t.startswith("--")]
        if "--from=" in a:
            continue
        out += toks[:-1]
    return out


def dockerignore_patterns():
    with open(os.path.join(DEPLOY, "..", ".dockerignore"), encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]


def ignored(path, patterns):
    p = path.rstrip("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        cands = [pat] + ([pat[3:]] if pat.startswith("**/") else [])
        for c in cands:
            parts = p.split("/")
            for i in range(1, len(parts) + 1):
                prefix = "/".join(parts[:i])
                if fnmatch.fnmatch(prefix, c):
                    return True
                if pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], c):
                    return True
    return False


COORD = os.path.join(DEPLOY, "docker", "coordinator.Dockerfile")
RUNNER = os.path.join(DEPLOY, "docker", "runner.Dockerfile")


def workspace_rust_version():
    with open(os.path.join(REPO, "Cargo.toml"), encoding="utf-8") as fh:
        m = re.search(r'rust-version\s*=\s*"([0-9.]+)"', fh.read())
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


class Dockerfiles(unittest.TestCase):
    def common(self, path, package, uid):
        stages, args = parse_dockerfile(path)
        final = stages[-1]
        # Rust builds with cached dependencies, then the real sources.
        builder = [s for s in stages if any("cargo build" in a for a in instrs(s, "RUN"))]
        self.assertEqual(len(builder), 1)
        runs = [a for i, a in builder[0][2] if i in ("RUN", "COPY")]
        cook = next(i for i, a in enumerate(runs) if "cargo chef cook" in a)
        copy_all = next(i for i, a in enumerate(runs) if a.split()[-2:] == [".", "."])
        build = next(i for i, a in enumerate(runs) if "cargo build" in a)
        self.assertLess(cook, copy_all)
        self.assertLess(copy_all, build)
        self.assertIn(f"-p {package}", runs[build])
        self.assertIn("--release", runs[build])
        self.assertIn("--locked", runs[build])
        self.assertIn(f"-p {package}", runs[cook])
        # Rust toolchain new enough for the workspace.
        want = workspace_rust_version()
        have = tuple(int(x) for x in args["RUST_VERSION"].split("."))
        if want:
            self.assertGreaterEqual(have, want[: len(have)])
        # Final stage: non-root numeric user matching the manifests, entrypoint.
        users = instrs(final, "USER")
        self.assertTrue(users, "final stage sets no USER")
        u = users[-1].split(":")[0]
        self.assertTrue(u.isdigit() and int(u) != 0, f"USER {users[-1]} must be a numeric non-root uid")
        self.assertEqual(int(u), uid)
        self.assertTrue(instrs(final, "ENTRYPOINT"))
        self.assertIn(f"/usr/local/bin/{package}", instrs(final, "ENTRYPOINT")[-1])
        self.assertTrue(any(f"/out/{package}" in a for a in instrs(final, "COPY")))
        return stages, final

    def test_coordinator(self):
        stages, final = self.common(COORD, "coordinator", 65532)
        node = [s for s in stages if s[1].startswith("node:")]
        self.assertEqual(len(node), 1)
        self.assertTrue(node[0][1].startswith("node:20"), node[0][1])
        runs = " ".join(instrs(node[0], "RUN"))
        self.assertIn("npm ci", runs)
        self.assertIn("npm run build", runs)
        env = env_of(final)
        self.assertEqual(env.get("TESTRUNNER_LISTEN"), "0.0.0.0:50051")
        console = env.get("TESTRUNNER_CONSOLE_DIR")
        self.assertTrue(console)
        self.assertTrue(any(a.split()[-1] == console and "--from=console" in a for a in instrs(final, "COPY")),
                        "the console is not copied to TESTRUNNER_CONSOLE_DIR")
        self.assertIn(str(checks.COORDINATOR_PORT), exposed(final))
        self.assertIn("distroless", final[1])
        # Same uid as the Kubernetes securityContext.
        objs = checks.render("production")
        ps = checks.pod_spec(checks.one(objs, "Deployment", "coordinator"))
        self.assertEqual(ps["securityContext"]["runAsUser"], 65532)

    def test_coordinator_runner_port(self):
        """EXPOSE documents the runner port; the image leaves the runner
        listener off (deployments opt in: an image ENV could not be unset),
        and compose and Kubernetes turn it on at that port."""
        stages, _ = parse_dockerfile(COORD)
        final = stages[-1]
        env = env_of(final)
        self.assertIn(str(checks.COORDINATOR_RUNNER_PORT), exposed(final))
        self.assertNotIn("TESTRUNNER_RUNNER_LISTEN", env)
        self.assertNotIn("TESTRUNNER_API_NICE", env)
        self.assertNotEqual(checks.listen_port(env["TESTRUNNER_LISTEN"]), checks.COORDINATOR_RUNNER_PORT)
        objs = checks.render("production")
        k8s = checks.env_map(objs, checks.container(objs, "Deployment", "coordinator", "coordinator"))
        with open(os.path.join(DEPLOY, "compose.yaml"), encoding="utf-8") as fh:
            compose = yaml.safe_load(fh)["services"]["coordinator"]["environment"]
        for where, e in (("kubernetes", k8s), ("compose", compose)):
            with self.subTest(where=where):
                self.assertIn(str(checks.listen_port(e["TESTRUNNER_RUNNER_LISTEN"])), exposed(final))

    def test_runner(self):
        stages, final = self.common(RUNNER, "runner", 10001)
        self.assertTrue(final[1].startswith("node:20"), final[1])
        runs = " ".join(instrs(final, "RUN"))
        for pkg in ("bash", "python3", "python3-pytest"):
            self.assertRegex(runs, rf"(?<![\w-]){re.escape(pkg)}(?![\w-])")
        for check in ("pytest --version", "node --version", "python3 --version"):
            self.assertIn(check, runs)
        env = env_of(final)
        self.assertEqual(env.get("TMPDIR"), "/tmp")
        self.assertEqual(env.get("HOME"), "/home/runner")
        objs = checks.render("production")
        d = checks.one(objs, "Deployment", "runner")
        # The image's user is unprivileged (a container started without the
        # manifests runs so); Kubernetes runs it as root with a few
        # capabilities, so tests get uids of their own (check_security).
        self.assertEqual(checks.pod_spec(d)["securityContext"]["runAsUser"], 0)
        mounts = {m["mountPath"] for m in checks.container(objs, "Deployment", "runner", "runner")["volumeMounts"]}
        self.assertIn(env["TMPDIR"], mounts, "TMPDIR must be a writable volume")
        self.assertIn("9091", instrs(final, "EXPOSE"))

    def test_copy_sources_exist_and_are_not_ignored(self):
        pats = dockerignore_patterns()
        missing_console = not os.path.exists(os.path.join(REPO, "web-client", "package.json"))
        for path in (COORD, RUNNER):
            stages, _ = parse_dockerfile(path)
            for stage in stages:
                for src in copy_sources(stage):
                    if src == ".":
                        continue
                    if src.startswith("web-client/") and missing_console:
                        continue  # reported by test_console_sources_present
                    with self.subTest(dockerfile=os.path.basename(path), src=src):
                        self.assertTrue(os.path.exists(os.path.join(REPO, src)), f"{src} not in the repo")
                        self.assertFalse(ignored(src, pats), f"{src} is excluded by the dockerignore")

    def test_console_sources_present(self):
        for f in ("web-client/package.json", "web-client/package-lock.json"):
            if not os.path.exists(os.path.join(REPO, f)):
                self.skipTest(f"{f} not committed yet: the console stage cannot build until it is")

    def test_dockerignore(self):
        pats = dockerignore_patterns()
        for p in ("target", "web-client/node_modules", ".git", "services/x/target", "web-client/dist"):
            self.assertTrue(ignored(p, pats), p)
        for p in ("Cargo.toml", "Cargo.lock", "proto/testrunner/v1/runner.proto", "services/runner/src/main.rs",
                  "web-client/package-lock.json", "web-client/src/main.tsx"):
            self.assertFalse(ignored(p, pats), p)


class Compose(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(DEPLOY, "compose.yaml"), encoding="utf-8") as fh:
            self.c = yaml.safe_load(fh)
        self.s = self.c["services"]

    def test_services(self):
        self.assertEqual(set(self.s), {"postgres", "coordinator", "runner"})

    def test_runner_scalable(self):
        r = self.s["runner"]
        self.assertNotIn("container_name", r)
        self.assertNotIn("ports", r)
        self.assertNotIn("hostname", r)

    def test_builds_from_repo_root(self):
        for name, df in (("coordinator", COORD), ("runner", RUNNER)):
            b = self.s[name]["build"]
            self.assertEqual(os.path.normpath(os.path.join(DEPLOY, b["context"])), REPO)
            self.assertEqual(os.path.join(REPO, b["dockerfile"]), df)

    def test_image_names_match_dev_overlay(self):
        imgs = {c["image"] for w in checks.workloads(checks.render("dev")) for c in checks.containers(w)}
        self.assertIn(self.s["coordinator"]["image"], imgs)
        self.assertIn(self.s["runner"]["image"], imgs)

    def test_drain_grace(self):
        r = self.s["runner"]
        drain = checks.parse_duration(r["environment"]["TESTRUNNER_DRAIN_TIMEOUT"])
        self.assertGreaterEqual(checks.parse_duration(r["stop_grace_period"]), drain + 10)

    def test_wiring(self):
        coord = self.s["coordinator"]["environment"]
        self.assertIn("@postgres:5432/", coord["TESTRUNNER_DATABASE_URL"])
        self.assertEqual(self.s["coordinator"]["depends_on"]["postgres"]["condition"], "service_healthy")
        self.assertIn("healthcheck", self.s["postgres"])
        r = self.s["runner"]["environment"]
        self.assertEqual(r["TESTRUNNER_COORDINATOR"], f"http://coordinator:{checks.COORDINATOR_RUNNER_PORT}")
        self.assertEqual(r["TESTRUNNER_RUNNER_TOKEN"], coord["TESTRUNNER_RUNNER_TOKEN"])
        pg = self.s["postgres"]["environment"]["POSTGRES_PASSWORD"]
        self.assertIn(f":{pg}@postgres", coord["TESTRUNNER_DATABASE_URL"])
        self.assertTrue(any(str(p).endswith(f":{checks.COORDINATOR_PORT}") for p in self.s["coordinator"]["ports"]))

    def test_runners_use_the_runner_port(self):
        coord = self.s["coordinator"]["environment"]
        self.assertEqual(coord["TESTRUNNER_RUNNER_LISTEN"], f"0.0.0.0:{checks.COORDINATOR_RUNNER_PORT}")
        self.assertNotIn("TESTRUNNER_API_NICE", coord)
        url = urlparse(self.s["runner"]["environment"]["TESTRUNNER_COORDINATOR"])
        self.assertEqual(url.hostname, "coordinator")
        self.assertIn(url.hostname, self.s)
        self.assertEqual(url.port, checks.listen_port(coord["TESTRUNNER_RUNNER_LISTEN"]))
        # The API port comes from the image (TESTRUNNER_LISTEN) unless set
        # here; the two listeners must not collide.
        stages, _ = parse_dockerfile(COORD)
        listen = coord.get("TESTRUNNER_LISTEN") or env_of(stages[-1])["TESTRUNNER_LISTEN"]
        self.assertNotEqual(checks.listen_port(listen), url.port)

    def test_runner_port_not_published(self):
        """Only the runners on the compose network use 50052."""
        for p in self.s["coordinator"].get("ports") or []:
            target = p.get("target") if isinstance(p, dict) else str(p).rsplit(":", 1)[-1].split("/")[0]
            self.assertNotEqual(str(target), str(checks.COORDINATOR_RUNNER_PORT), p)

    def test_hardened_and_writable_tmp(self):
        for name in ("coordinator", "runner"):
            svc = self.s[name]
            self.assertTrue(svc.get("read_only"), name)
            self.assertIn("ALL", svc.get("cap_drop", []), name)
            self.assertTrue(any(t.split(":")[0] == "/tmp" for t in svc.get("tmpfs", [])), name)
        # Tests are executed from TMPDIR: that tmpfs must allow exec.
        tmp = [t for t in self.s["runner"]["tmpfs"] if t.split(":")[0] == "/tmp"][0]
        self.assertIn("exec", tmp.split(":", 1)[1].split(","))


if __name__ == "__main__":
    unittest.main(verbosity=2)
