"""The Grafana dashboards (and the Prometheus rules) query only what the worker exports.

Every PromQL expression is tokenised, its metric names pulled out, and each checked against the
series a fresh `WorkerMetrics` registry produces (plus the process_/python_ default collectors,
Prometheus's own synthetic series and the recording rules in ops/prometheus/rules.yml).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from streams.metrics import WorkerMetrics

REPO_ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = REPO_ROOT / "ops" / "grafana" / "dashboards"
DASHBOARDS = {name: DASHBOARD_DIR / f"{name}.json" for name in ("reconnect-ops", "reconnect-pastoral")}
DATASOURCES_FILE = REPO_ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER_FILE = REPO_ROOT / "ops" / "grafana" / "provisioning" / "dashboards" / "reconnect.yml"
RULES_FILE = REPO_ROOT / "ops" / "prometheus" / "rules.yml"
PROMETHEUS_FILE = REPO_ROOT / "ops" / "prometheus" / "prometheus.yml"

# ---- PromQL tokenising --------------------------------------------------------------------------

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
    "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "exp", "floor",
    "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "double_exponential_smoothing", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin",
    "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan", "start", "end",
}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
MATCHERS = re.compile(r"\{([^{}]*)\}")
IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)")


def _strip_grafana(expr: str) -> str:
    # Grafana variables ($__rate_interval, $school, ${tier}) appear inside [] or "" only.
    return re.sub(r"\$\{?\w+(?::\w+)?\}?", "", expr)


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring/group_x clauses."""
    expr = _strip_grafana(expr)
    names: set[str] = set()
    for block in MATCHERS.findall(STRINGS.sub('""', expr)):
        names |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    for block in GROUPING.findall(STRINGS.sub('""', expr)):
        names |= {n.strip() for n in block.split(",") if n.strip()}
    return names


def parse_promql(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, function/aggregation names) used by a PromQL expression."""
    text = _strip_grafana(expr)
    text = re.sub(r"#[^\n]*", "", text)
    text = STRINGS.sub('""', text)
    # {__name__="x"} selects a metric by name.
    named = set(re.findall(r'__name__\s*=\s*"([^"]+)"', _strip_grafana(expr)))
    text = MATCHERS.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)         # ranges and subqueries
    text = GROUPING.sub(" ", text)
    metrics, functions = set(named), set()
    for match in IDENT.finditer(text):
        word = match.group(1)
        if word in KEYWORDS:          # `and (...)` is an operator, not a call
            continue
        if text[match.end():].lstrip().startswith("("):
            functions.add(word)
        else:
            metrics.add(word)
    return metrics, functions


# ---- what the worker exports --------------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}
# Series Prometheus itself makes: per-target scrape series and the alert state series.
PROMETHEUS_SYNTHETIC = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
    "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}
TARGET_LABELS = {"job", "instance", "le", "quantile"}
ALERT_LABELS = {"alertname", "alertstate", "severity", "service"}


def _registry_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


@pytest.fixture(scope="module")
def worker_metrics() -> WorkerMetrics:
    return WorkerMetrics(CollectorRegistry())


@pytest.fixture(scope="module")
def exported(worker_metrics) -> set[str]:
    from streams.webhook.metrics import BridgeMetrics

    names = _registry_names(worker_metrics.registry) | _registry_names(BridgeMetrics().registry)
    defaults = CollectorRegistry()
    ProcessCollector(registry=defaults)
    PlatformCollector(registry=defaults)
    GCCollector(registry=defaults)
    return names | _registry_names(defaults)


@pytest.fixture(scope="module")
def known_labels(worker_metrics) -> set[str]:
    labels = set(TARGET_LABELS | ALERT_LABELS)
    from streams.webhook.metrics import BridgeMetrics

    for metric in [*vars(worker_metrics).values(), *vars(BridgeMetrics()).values()]:
        labels |= set(getattr(metric, "_labelnames", ()))
    labels.add("version")  # reconnect_model_info{version=...}, set by Info.info()
    defaults = CollectorRegistry()
    PlatformCollector(registry=defaults)
    GCCollector(registry=defaults)
    for family in defaults.collect():
        for sample in family.samples:
            labels |= set(sample.labels)
    return labels


def _recording_rules() -> dict[str, str]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}


def _rule_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [(r.get("alert") or r["record"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def allowed(exported) -> set[str]:
    return exported | PROMETHEUS_SYNTHETIC | set(_recording_rules())


# ---- dashboards ---------------------------------------------------------------------------------

def _load(name: str) -> dict:
    return json.loads(DASHBOARDS[name].read_text())


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def _query_panels(dashboard: dict) -> list[dict]:
    return [p for p in iter_panels(dashboard["panels"]) if p.get("type") != "row"]


def _exprs(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in _query_panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"{panel['title']} / {target.get('refId')}", target.get("expr", "")))
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
        if match:
            out.append((f"variable ${var['name']}", match.group(1)))
    return out


def _datasource_uid() -> str:
    doc = yaml.safe_load(DATASOURCES_FILE.read_text())
    (source,) = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    return source["uid"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_is_valid_and_every_panel_has_a_query(name):
    dashboard = _load(name)
    assert dashboard["uid"] == name
    panels = _query_panels(dashboard)
    assert len(panels) >= 5
    ids = [p["id"] for p in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert exprs and all(exprs), f"{name}: panel {panel.get('title')!r} has no query"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_uses_the_provisioned_datasource(name):
    uid = _datasource_uid()
    dashboard = _load(name)
    for panel in iter_panels(dashboard["panels"]):
        refs = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        for ref in filter(None, refs):
            assert ref == {"type": "prometheus", "uid": uid}, f"{panel.get('title')}: {ref}"
    for var in dashboard["templating"]["list"]:
        assert var["datasource"] == {"type": "prometheus", "uid": uid}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_queries_name_only_exported_metrics(name, allowed, known_labels):
    problems = []
    exprs = _exprs(_load(name))
    assert exprs
    for where, expr in exprs:
        metrics, functions = parse_promql(expr)
        if not metrics:
            problems.append(f"{where}: no metric in {expr!r}")
        if unknown := metrics - allowed:
            problems.append(f"{where}: not exported by the worker or the bridge: {sorted(unknown)}")
        if unknown := functions - FUNCTIONS - AGGREGATIONS:
            problems.append(f"{where}: unknown PromQL functions {sorted(unknown)}")
        if unknown := label_names(expr) - known_labels:
            problems.append(f"{where}: unknown labels {sorted(unknown)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name,expr", _rule_exprs(), ids=[n for n, _ in _rule_exprs()])
def test_rule_expressions_name_only_exported_metrics(name, expr, exported, known_labels):
    # A rule may use recording rules defined before it, never a name it would have to invent.
    metrics, functions = parse_promql(expr)
    allowed = exported | PROMETHEUS_SYNTHETIC | set(_recording_rules())
    assert metrics - allowed == set()
    assert functions - FUNCTIONS - AGGREGATIONS == set()
    assert label_names(expr) <= known_labels


def test_ops_dashboard_covers_the_pipeline():
    used = set()
    for _, expr in _exprs(_load("reconnect-ops")):
        used |= parse_promql(expr)[0]
    for metric in (
        "reconnect_marks_consumed_total", "reconnect_processing_latency_seconds_bucket",
        "reconnect_end_to_end_latency_seconds_bucket", "reconnect_consumer_lag_messages",
        "reconnect_marks_dead_lettered_total", "reconnect_rebalances_total", "reconnect_batch_size_marks_bucket",
        "reconnect_scoring_seconds_per_mark_bucket", "reconnect_pupils_tracked", "reconnect_model_info",
        "reconnect_last_mark_processed_timestamp_seconds", "reconnect_consumer_offsets_skipped_total",
    ):
        assert metric in used, f"ops dashboard lacks {metric}"


def test_pastoral_dashboard_breaks_down_by_school_tier_and_kind():
    exprs = [expr for _, expr in _exprs(_load("reconnect-pastoral"))]
    grouped = set()
    for expr in exprs:
        grouped |= label_names(expr)
    assert {"school_id", "tier", "kind"} <= grouped
    assert all("reconnect_interventions_published_total" in e for e in exprs)


def test_dashboard_job_selectors_match_the_scrape_config():
    jobs = {j["job_name"] for j in yaml.safe_load(PROMETHEUS_FILE.read_text())["scrape_configs"]}
    texts = [DASHBOARDS[n].read_text() for n in DASHBOARDS] + [RULES_FILE.read_text()]
    for text in texts:
        for job in re.findall(r'job\s*=\s*\\?"([^"\\]+)\\?"', text):
            assert job in jobs, job


def test_provisioning_points_at_the_dashboards_mount():
    provider = yaml.safe_load(DASHBOARD_PROVIDER_FILE.read_text())["providers"][0]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.rsplit(":", 2)[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./ops/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"


# ---- the checker itself can fail ----------------------------------------------------------------

@pytest.mark.parametrize("expr,metrics,functions", [
    ('sum by (reason) (rate(reconnect_marks_dead_lettered_total{reason!="x", instance=~"$instance"}[$__rate_interval]))',
     {"reconnect_marks_dead_lettered_total"}, {"sum", "rate"}),
    ('histogram_quantile(0.99, sum(rate(a_bucket[5m])) by (le)) > 1e3 and on() b offset 1h',
     {"a_bucket", "b"}, {"histogram_quantile", "sum", "rate"}),
    ('x / ignoring(reason) group_left() y unless z{job="or"}', {"x", "y", "z"}, set()),
    ('time() - max(reconnect_last_mark_processed_timestamp_seconds)',
     {"reconnect_last_mark_processed_timestamp_seconds"}, {"time", "max"}),
    ('{__name__="up", job="w"} == bool 0', {"up"}, set()),
    ('reconnect:uk_registration_window == 1 and day_of_week() >= 1', {"reconnect:uk_registration_window"}, {"day_of_week"}),
])
def test_parse_promql(expr, metrics, functions):
    assert parse_promql(expr) == (metrics, functions)


def test_checker_rejects_a_metric_the_worker_does_not_export(allowed):
    metrics, _ = parse_promql('sum(rate(reconnect_marks_consumd_total[5m])) + reconnect_marks_consumed')
    assert metrics - allowed == {"reconnect_marks_consumd_total", "reconnect_marks_consumed"}


def test_checker_rejects_an_unknown_label(known_labels):
    assert label_names('sum by (school) (reconnect_interventions_published_total{pupil_id="1"})') - known_labels == {
        "school", "pupil_id",
    }
