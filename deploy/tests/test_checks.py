"""Each property check must catch the breakage it exists for (so a check
that passes everything cannot hide behind a green test_manifests.py)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
from checks import render  # noqa: E402


def runner_container(objs):
    return checks.container(objs, "Deployment", "runner", "runner")


def coordinator_container(objs):
    return checks.container(objs, "Deployment", "coordinator", "coordinator")


class ChecksCatchBreakage(unittest.TestCase):
    def setUp(self):
        self.objs = render("production")

    def assertCaught(self, check, *args, **kw):
        problems = check(self.objs, *args, **kw)
        self.assertNotEqual(problems, [], f"{check.__name__} missed the breakage")

    def test_grace_not_above_drain(self):
        checks.one(self.objs, "Deployment", "runner")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 60
        self.assertCaught(checks.check_drain_grace)

    def test_drain_raised_in_configmap(self):
        checks.one(self.objs, "ConfigMap", "runner-env")["data"]["TESTRUNNER_DRAIN_TIMEOUT"] = "2m"
        self.assertCaught(checks.check_drain_grace)

    def test_probe_not_grpc(self):
        coordinator_container(self.objs)["livenessProbe"] = {"tcpSocket": {"port": 50051}}
        self.assertCaught(checks.check_coordinator_probes)

    def test_probe_wrong_port(self):
        coordinator_container(self.objs)["readinessProbe"]["grpc"]["port"] = 8080
        self.assertCaught(checks.check_coordinator_probes)

    def test_probe_wrong_health_service(self):
        coordinator_container(self.objs)["readinessProbe"]["grpc"]["service"] = "nope"
        self.assertCaught(checks.check_coordinator_probes)

    def test_runner_probe_off_metrics_port(self):
        runner_container(self.objs)["readinessProbe"]["httpGet"]["port"] = 8080
        self.assertCaught(checks.check_runner_probes)

    def test_missing_limits(self):
        del runner_container(self.objs)["resources"]["limits"]["memory"]
        self.assertCaught(checks.check_resources)

    def test_request_above_limit(self):
        runner_container(self.objs)["resources"]["requests"]["memory"] = "3Gi"
        self.assertCaught(checks.check_resources)

    def test_slots_above_cpu(self):
        checks.one(self.objs, "ConfigMap", "runner-env")["data"]["TESTRUNNER_SLOTS"] = "8"
        self.assertCaught(checks.check_slots_fit_cpu)

    def test_root(self):
        del checks.one(self.objs, "Deployment", "coordinator")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
        del coordinator_container(self.objs)["securityContext"]["runAsNonRoot"]
        self.assertCaught(checks.check_security)

    def test_runner_with_more_capabilities(self):
        runner_container(self.objs)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN")
        self.assertCaught(checks.check_security)

    def test_runner_privileged(self):
        runner_container(self.objs)["securityContext"]["privileged"] = True
        self.assertCaught(checks.check_security)

    def test_tests_as_the_runners_user(self):
        env = runner_container(self.objs)["env"]
        [e for e in env if e["name"] == "TESTRUNNER_TEST_USER"][0]["value"] = "runner"
        self.assertCaught(checks.check_token_out_of_tests)

    def test_runner_unable_to_switch_users(self):
        runner_container(self.objs)["securityContext"]["runAsUser"] = 10001
        self.assertCaught(checks.check_token_out_of_tests)
        self.objs = render("production")
        runner_container(self.objs)["securityContext"]["capabilities"]["add"].remove("SETUID")
        self.assertCaught(checks.check_token_out_of_tests)

    def test_token_file_readable_by_group(self):
        spec = checks.one(self.objs, "Deployment", "runner")["spec"]["template"]["spec"]
        vol = [v for v in spec["volumes"] if v["name"] == "runner-token"][0]
        vol["secret"]["defaultMode"] = 0o440
        self.assertCaught(checks.check_token_out_of_tests)
        vol["secret"]["defaultMode"] = 0o400
        vol["secret"]["items"][0]["mode"] = 0o444
        self.assertCaught(checks.check_token_out_of_tests)

    def test_writable_root(self):
        coordinator_container(self.objs)["securityContext"]["readOnlyRootFilesystem"] = False
        self.assertCaught(checks.check_security)

    def test_no_tmp(self):
        runner_container(self.objs)["volumeMounts"] = []
        self.assertCaught(checks.check_security)

    def test_pdb_wrong_selector(self):
        checks.one(self.objs, "PodDisruptionBudget", "runner")["spec"]["selector"] = {
            "matchLabels": {"app.kubernetes.io/name": "testrunner-coordinator"}}
        self.assertCaught(checks.check_pdb)

    def test_pdb_missing(self):
        self.objs[:] = [o for o in self.objs if o["kind"] != "PodDisruptionBudget"]
        self.assertCaught(checks.check_pdb)

    def test_network_policy_open(self):
        checks.one(self.objs, "NetworkPolicy", "coordinator-ingress")["spec"]["ingress"][0]["from"].append({
            "namespaceSelector": {}})
        self.assertCaught(checks.check_network_policy)

    def test_network_policy_missing(self):
        self.objs[:] = [o for o in self.objs if o["kind"] != "NetworkPolicy"]
        self.assertCaught(checks.check_network_policy)

    def test_network_policy_admits_runners_to_api_port(self):
        rule = [r for r in checks.one(self.objs, "NetworkPolicy", "coordinator-ingress")["spec"]["ingress"]
                if any(pp["port"] == checks.COORDINATOR_RUNNER_PORT for pp in r["ports"])][0]
        rule["ports"].append({"protocol": "TCP", "port": checks.COORDINATOR_PORT})
        self.assertCaught(checks.check_network_policy)

    def test_network_policy_admits_ingress_to_runner_port(self):
        rule = [r for r in checks.one(self.objs, "NetworkPolicy", "coordinator-ingress")["spec"]["ingress"]
                if any(pp["port"] == checks.COORDINATOR_PORT for pp in r["ports"])][0]
        rule["ports"].append({"protocol": "TCP", "port": "runners"})  # named: resolved too
        self.assertCaught(checks.check_network_policy)

    def test_network_policy_rule_on_every_port(self):
        for rule in checks.one(self.objs, "NetworkPolicy", "coordinator-ingress")["spec"]["ingress"]:
            del rule["ports"]
        self.assertCaught(checks.check_network_policy)

    def test_network_policy_without_runner_rule(self):
        pol = checks.one(self.objs, "NetworkPolicy", "coordinator-ingress")
        pol["spec"]["ingress"] = [r for r in pol["spec"]["ingress"]
                                  if all(pp["port"] != checks.COORDINATOR_RUNNER_PORT for pp in r["ports"])]
        self.assertCaught(checks.check_network_policy)
        self.assertCaught(checks.check_runner_reaches_coordinator)

    def test_network_policy_selects_other_pods(self):
        checks.one(self.objs, "NetworkPolicy", "coordinator-ingress")["spec"]["podSelector"] = {
            "matchLabels": {"app.kubernetes.io/name": "testrunner-runner"}}
        self.assertCaught(checks.check_network_policy)

    def test_secret_key_missing(self):
        del checks.one(self.objs, "Secret", "testrunner-secrets")["stringData"]["runner-token"]
        self.assertCaught(checks.check_references)

    def test_configmap_missing(self):
        self.objs[:] = [o for o in self.objs if o["metadata"]["name"] != "runner-env"]
        self.assertCaught(checks.check_references)

    def test_service_targets_nothing(self):
        checks.one(self.objs, "Service", "coordinator")["spec"]["ports"][0]["targetPort"] = "grpc"
        self.assertCaught(checks.check_services)

    def test_runner_points_elsewhere(self):
        checks.one(self.objs, "ConfigMap", "runner-env")["data"]["TESTRUNNER_COORDINATOR"] = "http://coord:50052"
        self.assertCaught(checks.check_runner_reaches_coordinator)

    def test_runner_on_api_port(self):
        checks.one(self.objs, "ConfigMap", "runner-env")["data"]["TESTRUNNER_COORDINATOR"] = "http://coordinator:50051"
        self.assertCaught(checks.check_runner_reaches_coordinator)

    def test_runner_port_leads_to_api_listener(self):
        svc = checks.one(self.objs, "Service", "coordinator")
        [p for p in svc["spec"]["ports"] if p["port"] == checks.COORDINATOR_RUNNER_PORT][0]["targetPort"] = "api"
        self.assertCaught(checks.check_runner_reaches_coordinator)
        self.assertCaught(checks.check_coordinator_runner_port)

    def test_coordinator_without_runner_listener(self):
        del checks.one(self.objs, "ConfigMap", "coordinator-env")["data"]["TESTRUNNER_RUNNER_LISTEN"]
        self.assertCaught(checks.check_coordinator_runner_port)
        self.assertCaught(checks.check_runner_reaches_coordinator)

    def test_runner_listener_on_other_port(self):
        checks.one(self.objs, "ConfigMap", "coordinator-env")["data"]["TESTRUNNER_RUNNER_LISTEN"] = "0.0.0.0:50053"
        self.assertCaught(checks.check_coordinator_runner_port)
        self.assertCaught(checks.check_runner_reaches_coordinator)

    def test_runner_listener_on_api_port(self):
        checks.one(self.objs, "ConfigMap", "coordinator-env")["data"]["TESTRUNNER_LISTEN"] = "0.0.0.0:50052"
        self.assertCaught(checks.check_coordinator_runner_port)

    def test_api_nice_out_of_range(self):
        checks.one(self.objs, "ConfigMap", "coordinator-env")["data"]["TESTRUNNER_API_NICE"] = "-5"
        self.assertCaught(checks.check_coordinator_runner_port)

    def test_runner_container_port_missing(self):
        c = coordinator_container(self.objs)
        c["ports"] = [p for p in c["ports"] if p["name"] != "runners"]
        self.assertCaught(checks.check_coordinator_runner_port)
        self.assertCaught(checks.check_services)

    def test_service_without_runner_port(self):
        svc = checks.one(self.objs, "Service", "coordinator")
        svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["port"] != checks.COORDINATOR_RUNNER_PORT]
        self.assertCaught(checks.check_coordinator_runner_port)
        self.assertCaught(checks.check_runner_reaches_coordinator)

    def test_service_without_api_port(self):
        svc = checks.one(self.objs, "Service", "coordinator")
        svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["port"] != checks.COORDINATOR_PORT]
        self.assertCaught(checks.check_coordinator_runner_port)

    def test_tokens_differ(self):
        spec = checks.one(self.objs, "Deployment", "runner")["spec"]["template"]["spec"]
        vol = [v for v in spec["volumes"] if v["name"] == "runner-token"][0]
        vol["secret"]["items"][0]["key"] = "api-token"
        self.assertCaught(checks.check_shared_token)

    def test_runner_token_in_the_environment(self):
        runner_container(self.objs)["env"].append({"name": "TESTRUNNER_RUNNER_TOKEN", "value": "x"})
        self.assertCaught(checks.check_shared_token)

    def test_hpa_fights_kubectl_scale(self):
        self.objs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                          "metadata": {"name": "runner", "namespace": "testrunner"}, "spec": {}})
        self.assertCaught(checks.check_no_autoscaler)

    def test_unpinned_image(self):
        runner_container(self.objs)["image"] = "registry.example.com/testrunner/runner:latest"
        self.assertCaught(checks.check_images, production=True)

    def test_in_cluster_db_in_production(self):
        self.objs.extend(o for o in render("dev") if o["kind"] == "StatefulSet")
        self.assertCaught(checks.check_production_external_db)

    def test_single_coordinator_in_production(self):
        checks.one(self.objs, "Deployment", "coordinator")["spec"]["replicas"] = 1
        self.assertCaught(checks.check_production_external_db)

    def test_production_coordinators_without_pdb(self):
        self.objs[:] = [o for o in self.objs
                        if not (o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "coordinator")]
        self.assertCaught(checks.check_production_external_db)

    def test_wrong_namespace(self):
        checks.one(self.objs, "Service", "coordinator")["metadata"]["namespace"] = "default"
        self.assertCaught(checks.check_namespace)


class DevAndKedaChecksCatchBreakage(unittest.TestCase):
    def test_dev_password_mismatch(self):
        objs = render("dev")
        checks.one(objs, "Secret", "postgres-dev")["stringData"]["password"] = "other"
        self.assertNotEqual(checks.check_dev_postgres(objs), [])

    def test_dev_url_to_wrong_host(self):
        objs = render("dev")
        s = checks.one(objs, "Secret", "testrunner-secrets")["stringData"]
        s["database-url"] = s["database-url"].replace("@postgres:", "@db:")
        self.assertNotEqual(checks.check_dev_postgres(objs), [])

    def test_keda_threshold_not_slots(self):
        objs = render("production-autoscaled")
        checks.one(objs, "ScaledObject", "runner")["spec"]["triggers"][0]["metadata"]["threshold"] = "10"
        self.assertNotEqual(checks.check_keda(objs), [])

    def test_keda_with_replicas_still_set(self):
        objs = render("production-autoscaled")
        checks.one(objs, "Deployment", "runner")["spec"]["replicas"] = 3
        self.assertNotEqual(checks.check_keda(objs), [])

    def test_keda_wrong_metric(self):
        objs = render("production-autoscaled")
        checks.one(objs, "ScaledObject", "runner")["spec"]["triggers"][0]["metadata"]["query"] = "up"
        self.assertNotEqual(checks.check_keda(objs), [])

    def test_tls_probe_still_grpc(self):
        objs = render("production-tls")
        coordinator_container(objs)["readinessProbe"] = {"grpc": {"port": 50051}}
        self.assertNotEqual(checks.check_coordinator_probes(objs, tls=True), [])

    def test_tls_runner_on_api_port(self):
        objs = render("production-tls")
        e = [x for x in runner_container(objs)["env"] if x["name"] == "TESTRUNNER_COORDINATOR"][0]
        e["value"] = "https://coordinator:50051"
        self.assertNotEqual(checks.check_tls(objs), [])

    def test_tls_runner_back_to_plaintext(self):
        objs = render("production-tls")
        e = [x for x in runner_container(objs)["env"] if x["name"] == "TESTRUNNER_COORDINATOR"][0]
        e["value"] = "http://coordinator:50052"
        self.assertNotEqual(checks.check_tls(objs), [])

    def test_tls_ca_not_mounted(self):
        objs = render("production-tls")
        runner_container(objs)["volumeMounts"] = [m for m in runner_container(objs)["volumeMounts"]
                                                  if m["name"] != "coordinator-ca"]
        self.assertNotEqual(checks.check_tls(objs), [])


class Parsers(unittest.TestCase):
    def test_durations(self):
        self.assertEqual(checks.parse_duration("60s"), 60)
        self.assertEqual(checks.parse_duration("1m30s"), 90)
        self.assertEqual(checks.parse_duration("90"), 90)
        self.assertEqual(checks.parse_duration("500ms"), 0.5)
        with self.assertRaises(ValueError):
            checks.parse_duration("soon")

    def test_quantities(self):
        self.assertEqual(checks.quantity("250m"), 0.25)
        self.assertEqual(checks.quantity("1Gi"), 2**30)
        self.assertLess(checks.quantity("512Mi"), checks.quantity("1Gi"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
