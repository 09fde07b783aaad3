"""The Prometheus configuration and alerting rules: promtool's own checks, the promtool unit tests
under ops/prometheus/tests/, and the conventions promtool cannot see."""

from __future__ import annotations

import re

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from devtools.promtool import (
    CONFIG_FILE,
    RULE_TESTS_DIR,
    RULES_FILE,
    promtool_check_config,
    promtool_check_metrics,
    promtool_check_rules,
    promtool_run_rule_tests,
)
from streams.metrics import WorkerMetrics

# Rule-test files that evaluate months of rule steps and take tens of seconds.
SLOW_RULE_TESTS = {"uk_time_test.yml", "alerts_test.yml"}
SEVERITIES = {"critical", "warning", "info"}
# Labels an annotation may show. Ops alerts describe the pipeline, never a pupil.
ANNOTATION_LABELS = {"instance", "job", "reason", "partition", "service", "topic"}


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> list[dict]:
    return [rule for rule in _rules() if "alert" in rule]


def _rule_test_files() -> list:
    files = sorted(RULE_TESTS_DIR.glob("*.yml"))
    return [
        pytest.param(path, id=path.name, marks=[pytest.mark.slow] if path.name in SLOW_RULE_TESTS else [])
        for path in files
    ]


def test_rules_pass_promtool_check(promtool):
    rc, output = promtool_check_rules()
    assert rc == 0, output
    assert f"SUCCESS: {len(_rules())} rules found" in output, output


def test_config_passes_promtool_check(promtool):
    rc, output = promtool_check_config()
    assert rc == 0, output
    assert "is valid prometheus config file syntax" in output, output


def test_rule_test_files_exist():
    assert [p for p in RULE_TESTS_DIR.glob("*.yml")], f"no promtool rule tests in {RULE_TESTS_DIR}"


@pytest.mark.parametrize("test_file", _rule_test_files())
def test_promtool_rule_unit_tests(promtool, test_file):
    rc, output = promtool_run_rule_tests(test_file)
    assert rc == 0, output
    assert "SUCCESS" in output and "FAILED" not in output, output


def test_promtool_rule_tests_can_fail(promtool, tmp_path):
    """A rule test expecting an alert that cannot fire must make promtool exit non-zero, so a green
    run of the real tests means something."""
    bogus = tmp_path / "bogus_test.yml"
    bogus.write_text(yaml.safe_dump({
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": 'reconnect_model_loaded{instance="w:6066"}', "values": "1x10"}],
            "alert_rule_test": [{
                "eval_time": "10m", "alertname": "ReconnectNoModelLoaded",
                "exp_alerts": [{"exp_labels": {"severity": "critical", "service": "reconnect", "instance": "w:6066"}}],
            }],
        }],
    }))
    rc, output = promtool_run_rule_tests(bogus)
    assert rc != 0 and "FAILED" in output, output


def test_every_alert_is_shown_to_fire_in_a_unit_test():
    fired: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for case in yaml.safe_load(path.read_text()).get("tests", []):
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    missing = {rule["alert"] for rule in _alerts()} - fired
    assert not missing, f"alerts with no promtool test that expects them to fire: {sorted(missing)}"


def test_rule_test_files_load_the_real_rules():
    for path in RULE_TESTS_DIR.glob("*.yml"):
        rule_files = yaml.safe_load(path.read_text())["rule_files"]
        assert [(path.parent / f).resolve() for f in rule_files] == [RULES_FILE.resolve()], path


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_alert_has_severity_and_supportive_annotations(alert):
    assert alert["labels"].get("severity") in SEVERITIES
    annotations = alert.get("annotations", {})
    for key in ("summary", "description"):
        assert len(annotations.get(key, "").strip()) > 10, f"{alert['alert']}: {key} missing"
    shown = set()
    for text in annotations.values():
        shown |= set(re.findall(r"\$labels\.(\w+)", text))
    assert shown <= ANNOTATION_LABELS, f"{alert['alert']} shows labels {shown - ANNOTATION_LABELS}"
    assert "pupil_id" not in alert["expr"], "ops alerts never select on pupils"


def test_alert_names_are_unique_and_recording_rules_follow_convention():
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names))
    for rule in _rules():
        if "record" in rule:
            # level:metric:operations, https://prometheus.io/docs/practices/rules/
            assert re.fullmatch(r"reconnect:[a-z0-9_]+(:[a-z0-9_]+)?", rule["record"]), rule["record"]


def test_the_brief_s_alerts_exist():
    names = {rule["alert"] for rule in _alerts()}
    assert {
        "ReconnectWorkerDown", "ReconnectNoWorkers", "ReconnectConsumerLagGrowing", "ReconnectDeadLetterSpike",
        "ReconnectNoMarksDuringRegistration", "ReconnectNoModelLoaded",
    } <= names


def test_config_scrapes_workers_and_loads_the_rules():
    config = yaml.safe_load(CONFIG_FILE.read_text())
    assert [CONFIG_FILE.parent / f for f in config["rule_files"]] == [RULES_FILE]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker = jobs["reconnect-worker"]
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    # The job name the rules and dashboards select on.
    assert 'job="reconnect-worker"' in RULES_FILE.read_text()
    assert worker["dns_sd_configs"][0]["type"] == "A"


def test_config_scrapes_the_webhook_bridge_where_it_serves():
    from streams.settings import Settings

    config = yaml.safe_load(CONFIG_FILE.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "reconnect-webhook"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["webhook-bridge"] and sd["port"] == Settings(_env_file=None).bridge_metrics_port
    assert 'job="reconnect-webhook"' in RULES_FILE.read_text()


def test_worker_metrics_pass_promtool_lint(promtool):
    """Offline lint of every metric the worker registers (the live scrape is checked elsewhere)."""
    metrics = WorkerMetrics(CollectorRegistry())
    text = generate_latest(metrics.registry).decode()
    assert "reconnect_marks_consumed_total" in text
    rc, output = promtool_check_metrics(text)
    assert rc == 0, output


def test_promtool_lint_catches_a_bad_exposition(promtool):
    rc, output = promtool_check_metrics("# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n")
    assert rc != 0 and "_total" in output, output
