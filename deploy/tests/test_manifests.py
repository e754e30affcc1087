"""Properties of every rendered overlay (see checks.py for each property)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
from checks import TARGETS, render  # noqa: E402


class Common(unittest.TestCase):
    """Properties every target must have."""

    def test_common_properties(self):
        for target in TARGETS:
            objs = render(target)
            for check in checks.ALL_COMMON:
                with self.subTest(target=target, check=check.__name__):
                    self.assertEqual(check(objs), [])

    def test_coordinator_probes_are_grpc_health_on_api_port(self):
        for target in ("dev", "production", "production-autoscaled"):
            with self.subTest(target=target):
                self.assertEqual(checks.check_coordinator_probes(render(target)), [])

    def test_runner_reaches_coordinator_service_on_runner_port(self):
        # production-tls: the same check with https, in Tls.test_tls_wiring.
        for target in ("dev", "production", "production-autoscaled"):
            with self.subTest(target=target):
                self.assertEqual(checks.check_runner_reaches_coordinator(render(target)), [])

    def test_coordinator_serves_runner_port(self):
        # Also in ALL_COMMON; spelled out so a failure names the property.
        for target in TARGETS:
            with self.subTest(target=target):
                self.assertEqual(checks.check_coordinator_runner_port(render(target)), [])

    def test_network_policy_admits_runners_to_runner_port_and_ingress_to_api(self):
        for target in ("dev", "production"):
            with self.subTest(target=target):
                self.assertEqual(checks.check_network_policy(render(target)), [])

    def test_every_object_renders_with_kind_name_namespace(self):
        for target in TARGETS:
            for o in render(target):
                self.assertTrue(o["metadata"]["name"])
                if checks.namespaced(o):
                    self.assertTrue(o["metadata"].get("namespace"), o["metadata"]["name"])


class Dev(unittest.TestCase):
    def setUp(self):
        self.objs = render("dev")

    def test_has_postgres_statefulset_wired_to_coordinator(self):
        self.assertEqual(checks.check_dev_postgres(self.objs), [])

    def test_images_are_local_dev_builds(self):
        self.assertEqual(checks.check_images(self.objs, production=False), [])
        imgs = {c["image"] for w in checks.workloads(self.objs) for c in checks.containers(w)}
        self.assertIn("testrunner/coordinator:dev", imgs)
        self.assertIn("testrunner/runner:dev", imgs)

    def test_manual_scaling_owns_replicas(self):
        self.assertEqual(checks.check_no_autoscaler(self.objs), [])

    def test_dev_namespace(self):
        self.assertEqual(checks.find(self.objs, "Namespace")[0]["metadata"]["name"], "testrunner-dev")


class Production(unittest.TestCase):
    def setUp(self):
        self.objs = render("production")

    def test_external_database_only(self):
        self.assertEqual(checks.check_production_external_db(self.objs), [])

    def test_more_runners_than_dev(self):
        prod = checks.one(self.objs, "Deployment", "runner")["spec"]["replicas"]
        dev = checks.one(render("dev"), "Deployment", "runner")["spec"]["replicas"]
        self.assertGreater(prod, dev)

    def test_manual_scaling_owns_replicas(self):
        self.assertEqual(checks.check_no_autoscaler(self.objs), [])

    def test_images_pinned(self):
        self.assertEqual(checks.check_images(self.objs, production=True), [])

    def test_ingress_serves_the_api_port_only(self):
        ports = {p["backend"]["service"]["port"]["number"]
                 for ing in checks.find(self.objs, "Ingress")
                 for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
        self.assertEqual(ports, {checks.COORDINATOR_PORT})

    def test_only_database_url_differs_in_secret(self):
        base = checks.one(render("dev"), "Secret", "testrunner-secrets")
        prod = checks.one(self.objs, "Secret", "testrunner-secrets")
        self.assertEqual(set(base["stringData"]), set(prod["stringData"]))
        self.assertTrue(prod["stringData"]["runner-token"].startswith("CHANGE-ME"))

    def test_placeholders_are_marked(self):
        s = checks.one(self.objs, "Secret", "testrunner-secrets")["stringData"]
        for key, value in s.items():
            self.assertIn("CHANGE-ME", value, key)


class Autoscaled(unittest.TestCase):
    def setUp(self):
        self.objs = render("production-autoscaled")

    def test_keda_scaledobject_on_queue_depth(self):
        self.assertEqual(checks.check_keda(self.objs), [])

    def test_prometheus_may_scrape_coordinator(self):
        extra = {"ns:monitoring/pods:prometheus"}
        self.assertEqual(checks.check_network_policy(self.objs, extra=extra), [])

    def test_everything_else_as_production(self):
        prod = {(o["kind"], o["metadata"]["name"]) for o in render("production")}
        auto = {(o["kind"], o["metadata"]["name"]) for o in self.objs}
        self.assertEqual(auto - prod, {("ScaledObject", "runner"), ("NetworkPolicy", "coordinator-metrics")})
        self.assertEqual(prod - auto, set())


class Pools(unittest.TestCase):
    def setUp(self):
        self.objs = render("production-pools")

    def test_each_pool_scales_on_its_own_queue(self):
        self.assertEqual(checks.check_pools(self.objs), [])
        self.assertEqual(checks.check_keda(self.objs), [])

    def test_the_pool_reaches_the_coordinator_and_is_admitted(self):
        self.assertEqual(checks.check_runner_reaches_coordinator(self.objs), [])
        extra = {"ns:monitoring/pods:prometheus"}
        pools = {"local:runner-gpu"}
        self.assertEqual(checks.check_network_policy(self.objs, extra=extra, pools=pools), [])

    def test_a_pool_without_its_own_trigger_is_caught(self):
        broken = [o for o in self.objs if (o["kind"], o["metadata"]["name"]) != ("ScaledObject", "runner-gpu")]
        self.assertTrue(checks.check_pools(broken))

    def test_everything_else_as_autoscaled(self):
        auto = {(o["kind"], o["metadata"]["name"]) for o in render("production-autoscaled")}
        pools = {(o["kind"], o["metadata"]["name"]) for o in self.objs}
        self.assertEqual(pools - auto, {("Deployment", "runner-gpu"), ("ScaledObject", "runner-gpu"),
                                        ("NetworkPolicy", "coordinator-runner-gpu")})
        self.assertEqual(auto - pools, set())


class Tls(unittest.TestCase):
    def setUp(self):
        self.objs = render("production-tls")

    def test_tls_wiring(self):
        self.assertEqual(checks.check_tls(self.objs), [])

    def test_probes_fall_back_to_tcp(self):
        self.assertEqual(checks.check_coordinator_probes(self.objs, tls=True), [])

    def test_keda_still_valid(self):
        self.assertEqual(checks.check_keda(self.objs), [])

    def test_network_policy_unchanged_by_tls(self):
        extra = {"ns:monitoring/pods:prometheus"}
        self.assertEqual(checks.check_network_policy(self.objs, extra=extra), [])

    def test_runners_use_tls_on_runner_port(self):
        url = checks.env_map(self.objs, checks.container(self.objs, "Deployment", "runner", "runner"))[
            "TESTRUNNER_COORDINATOR"]
        self.assertEqual(url, f"https://coordinator:{checks.COORDINATOR_RUNNER_PORT}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
