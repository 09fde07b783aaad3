"""docker-compose.yml, the Dockerfile and .env.example, checked statically (no Docker engine here).

The compose file is validated against the Compose Specification JSON schema (vendored in
tests/data/, see its README), its ${VAR} interpolation is resolved with .env.example's values, and
what it refers to (commands, files, services, settings, the Prometheus scrape target) must exist.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import jsonschema
import pytest
import yaml

from streams.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PROMETHEUS_FILE = REPO_ROOT / "ops" / "prometheus" / "prometheus.yml"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose_spec.json"
COMPOSE_SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"

# The `reconnect` subcommands the stack may run (they must also exist in streams.cli).
RECONNECT_COMMANDS = {("worker",), ("topics", "create"), ("caseload",), ("bridge",)}
WORKER_WEB_PORT = "6066"
LONG_RUNNING = {"kafka", "worker", "caseload", "postgres", "prometheus", "grafana", "webhook-bridge"}
ONE_SHOT = {"topics-init"}
REQUIRED_VARS = {"GRAFANA_ADMIN_PASSWORD", "CASELOAD_DB_PASSWORD", "CASELOAD_SESSION_SECRET"}  # ${VAR:?...}: no default
TEST_SECRET = "not-a-real-password"


# ---- Compose interpolation (https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/)

class InterpolationError(ValueError):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


_TOKEN = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.S)


def interpolate(value: str, env: dict[str, str], strict: bool = True) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt},
    $VAR and $$. strict: an unset variable without a default is an error (Compose would warn and
    substitute an empty string)."""

    def replace(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            name, op, arg = match.group("named"), None, None
        else:
            parsed = _BRACED.fullmatch(match.group("braced"))
            if not parsed:
                raise InterpolationError(match.group(0), "invalid interpolation syntax")
            name, op, arg = parsed.group("name", "op", "arg")
        present, current = name in env, env.get(name, "")
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if present else arg
        if op == ":?":
            if not current:
                raise InterpolationError(name, arg or "required")
            return current
        if op == "?":
            if not present:
                raise InterpolationError(name, arg or "required")
            return current
        if op == ":+":
            return arg if current else ""
        if op == "+":
            return arg if present else ""
        if strict and not present:
            raise InterpolationError(name, "unset and has no default")
        return current

    return _TOKEN.sub(replace, value)


def interpolate_tree(node, env: dict[str, str]):
    """Interpolate every string value (not keys) of a parsed compose document, as Compose does."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def variables_in(node) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for value in node.values():
            found |= variables_in(value)
    elif isinstance(node, list):
        for item in node:
            found |= variables_in(item)
    elif isinstance(node, str):
        for match in _TOKEN.finditer(node):
            if match.group("named"):
                found.add(match.group("named"))
            elif match.group("braced"):
                found.add(_BRACED.fullmatch(match.group("braced")).group("name"))
    return found


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}:{number}: {line!r}"
        assert key not in env, f"{path.name}:{number}: {key} set twice"
        env[key] = value
    return env


# ---- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw, env_example) -> dict:
    """The compose file as `docker compose config` would see it with .env.example copied to .env
    (and the required secrets filled in)."""
    return interpolate_tree(raw, {**env_example, **{name: TEST_SECRET for name in REQUIRED_VARS}})


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    # The file declares draft 2019-09 (with a trailing '#' jsonschema does not recognise).
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def _errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


# ---- schema -------------------------------------------------------------------------------------

def test_vendored_schema_is_the_recorded_file():
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == COMPOSE_SCHEMA_SHA256
    assert (SCHEMA_FILE.parent / "compose_spec.LICENSE").read_text().lstrip().startswith("Apache License")


def test_compose_file_matches_the_compose_spec(validator, raw, compose):
    assert not _errors(validator, raw), "\n".join(_errors(validator, raw))
    assert not _errors(validator, compose), "\n".join(_errors(validator, compose))


@pytest.mark.parametrize("mutate", [
    lambda d: d["services"]["worker"].update(contianer_name="typo"),
    lambda d: d["services"]["kafka"]["environment"].update(KAFKA_NODE_ID=True),
    lambda d: d["services"]["worker"]["depends_on"]["kafka"].update(condition="service_ready"),
    lambda d: d.update(volume={"x": {}}),
], ids=["unknown-key", "boolean-env-value", "bad-depends-condition", "unknown-top-level"])
def test_schema_rejects_broken_variants(validator, raw, mutate):
    broken = copy.deepcopy(raw)
    mutate(broken)
    assert _errors(validator, broken)


# ---- interpolation and .env.example -------------------------------------------------------------

def test_every_variable_is_documented_in_env_example(raw, env_example):
    text = ENV_EXAMPLE.read_text().splitlines()
    undocumented = variables_in(raw) - set(env_example)
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"
    for index, line in enumerate(text):
        if re.match(r"[A-Za-z_]\w*=", line):
            assert index and text[index - 1].startswith("# "), f".env.example: {line.split('=')[0]} lacks a comment line"


def test_every_env_example_variable_is_used(raw, env_example):
    settings_env = {f"RECONNECT_{name.upper()}" for name in Settings.model_fields} | {"KAFKA_BOOTSTRAP_SERVERS"}
    compose_own = {"COMPOSE_PROJECT_NAME"}
    unused = set(env_example) - variables_in(raw) - settings_env - compose_own
    assert not unused, f".env.example documents variables nothing reads: {sorted(unused)}"


def test_env_example_values_match_compose_defaults(raw, env_example):
    """.env.example shows the defaults: copying it must not change behaviour."""
    defaults: dict[str, str] = {}

    def collect(node) -> None:
        if isinstance(node, dict):
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)
        elif isinstance(node, str):
            for match in _TOKEN.finditer(node):
                parsed = match.group("braced") and _BRACED.fullmatch(match.group("braced"))
                if parsed and parsed.group("op") == ":-":
                    name, default = parsed.group("name", "arg")
                    assert defaults.setdefault(name, default) == default, f"{name} has two different defaults"

    collect(raw)
    assert defaults
    for name, default in defaults.items():
        assert env_example[name] == default, f"{name}: .env.example {env_example[name]!r} != compose {default!r}"


def test_interpolation_resolves_with_env_example_values(raw, env_example, compose):
    # The only gaps .env.example leaves are the secrets compose insists on.
    with pytest.raises(InterpolationError) as missing:
        interpolate_tree(raw, env_example)
    assert missing.value.name in REQUIRED_VARS
    assert all(env_example.get(name, "") == "" for name in REQUIRED_VARS)
    # Resolved, nothing is left to substitute.
    assert not variables_in(compose)
    # And every default alone (no .env at all) resolves too.
    interpolate_tree(raw, {name: TEST_SECRET for name in REQUIRED_VARS})


def test_interpolation_semantics():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$SET $SET", env) == "x d  d $SET x"
    assert interpolate("${SET:+alt}${EMPTY:+alt}", env) == "alt"
    with pytest.raises(InterpolationError):
        interpolate("${EMPTY:?needed}", env)
    with pytest.raises(InterpolationError):
        interpolate("${UNSET}", env)


# ---- services -----------------------------------------------------------------------------------

def test_expected_services(compose):
    assert set(compose["services"]) == LONG_RUNNING | ONE_SHOT


@pytest.mark.parametrize("service", sorted(LONG_RUNNING))
def test_long_running_services_have_healthcheck_and_restart(compose, service):
    spec = compose["services"][service]
    assert spec.get("restart") in {"always", "unless-stopped", "on-failure"}
    check = spec["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)


def test_one_shot_initialiser_does_not_restart(compose):
    assert compose["services"]["topics-init"]["restart"] == "no"
    assert compose["services"]["worker"]["depends_on"]["topics-init"] == {"condition": "service_completed_successfully"}


def test_images_are_pinned(compose):
    for name, spec in compose["services"].items():
        image = spec["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        if "build" not in spec:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} should pin a version"
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["prometheus"]["image"].startswith("prom/prometheus:")
    assert compose["services"]["grafana"]["image"].startswith("grafana/grafana:")
    assert compose["services"]["postgres"]["image"].startswith("postgres:")


def test_kafka_is_a_single_kraft_node_with_a_durable_volume(compose):
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "zookeeper" not in json.dumps(kafka).lower()
    data_mount = [v for v in kafka["volumes"] if v.split(":")[1] == env["KAFKA_LOG_DIRS"]]
    assert data_mount and data_mount[0].split(":")[0] in compose["volumes"]
    # Every advertised listener is also a listener.
    listeners = {l.split("://")[0] for l in env["KAFKA_LISTENERS"].split(",")}
    advertised = {l.split("://")[0] for l in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert advertised <= listeners
    assert set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(":", ",").split(",")[::2]) == listeners
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_worker_can_scale(compose):
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "a fixed container_name stops --scale"
    assert "ports" not in worker, "a published host port stops --scale"
    assert WORKER_WEB_PORT in [str(p) for p in worker["expose"]]
    assert worker["environment"]["RECONNECT_WEB_PORT"] == WORKER_WEB_PORT
    assert worker["environment"]["RECONNECT_WEB_BIND"] == "0.0.0.0"  # the container's address, never published
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{WORKER_WEB_PORT}/readyz" in probe and "urllib" in probe


def test_prometheus_scrapes_every_worker_replica(compose):
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "reconnect-worker"]
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A" and str(sd["port"]) == WORKER_WEB_PORT
    assert sd["names"] == ["worker"] and "worker" in compose["services"]


def test_prometheus_scrapes_the_webhook_bridge_where_it_serves(compose):
    """Opt-in (a profile), exposed on the compose network only, on the port Prometheus scrapes."""
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "reconnect-webhook"]
    (sd,) = job["dns_sd_configs"]
    bridge = compose["services"]["webhook-bridge"]
    assert bridge["profiles"] == ["webhook"] and sd["names"] == ["webhook-bridge"]
    assert bridge["expose"] == [str(sd["port"])] == [bridge["environment"]["RECONNECT_BRIDGE_METRICS_PORT"]]
    assert bridge["environment"]["RECONNECT_WEB_BIND"] == "0.0.0.0" and "ports" not in bridge


def test_published_ports_are_valid_and_loopback_by_default(compose):
    for name, spec in compose["services"].items():
        for mapping in spec.get("ports", []):
            host_ip, host_port, container_port = str(mapping).rsplit(":", 2)
            assert ipaddress.ip_address(host_ip).is_loopback, f"{name}: {mapping}"
            assert 1 <= int(host_port) <= 65535 and 1 <= int(container_port) <= 65535


def test_depends_on_and_named_volumes_exist(compose):
    services = compose["services"]
    for name, spec in services.items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_bind_mounts_exist(compose):
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"


def test_reconnect_containers_agree_with_settings(compose):
    """Every RECONNECT_*/KAFKA_BOOTSTRAP_SERVERS variable given to the image is a real setting, parses,
    and (where compose only passes a default through) equals the code's default."""
    env_names = {f"RECONNECT_{name.upper()}": name for name in Settings.model_fields}
    env_names["KAFKA_BOOTSTRAP_SERVERS"] = "kafka_bootstrap_servers"
    baseline = Settings(_env_file=None)
    fixed_for_containers = {"KAFKA_BOOTSTRAP_SERVERS", "RECONNECT_WEB_BIND", "RECONNECT_DATA_DIR"}
    for service in ("worker", "topics-init", "webhook-bridge"):
        env = compose["services"][service]["environment"]
        unknown = {k for k in env if k.startswith("RECONNECT_") or k == "KAFKA_BOOTSTRAP_SERVERS"} - set(env_names)
        assert not unknown, f"{service} sets variables streams/settings.py does not read: {sorted(unknown)}"
        for key, value in env.items():
            if key in env_names and key not in fixed_for_containers:
                field = env_names[key]
                parsed = Settings(_env_file=None, **{field: value})
                assert getattr(parsed, field) == getattr(baseline, field), f"{service}: {key}={value!r}"


def test_caseload_container_agrees_with_its_settings(compose):
    """The caseload reads RECONNECT_CASELOAD_* (and the shared Kafka and topic names): every such variable
    it is given is one of its settings and parses; its database password never sits in the URL."""
    from caseload.settings import CaseloadSettings

    env = compose["services"]["caseload"]["environment"]
    own = {f"RECONNECT_CASELOAD_{name.upper()}" for name in CaseloadSettings.model_fields}
    unknown = {key for key in env if key.startswith("RECONNECT_CASELOAD_")} - own
    assert not unknown, f"caseload is given variables caseload/settings.py does not read: {sorted(unknown)}"
    settings = CaseloadSettings(_env_file=None, **{key.removeprefix("RECONNECT_CASELOAD_").lower(): value
                                                   for key, value in env.items() if key in own})
    assert settings.database_url.startswith("postgresql+psycopg://") and TEST_SECRET not in settings.database_url
    assert settings.bind == "0.0.0.0" and settings.cookie_secure
    assert env["PGPASSWORD"] == TEST_SECRET == compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert compose["services"]["caseload"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "ports" not in compose["services"]["postgres"], "only the caseload talks to its database"


# ---- commands, the image and its build context --------------------------------------------------

def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _exec_form(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def test_dockerfile_builds_a_slim_non_root_reconnect_image():
    instructions = _dockerfile_instructions()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    bases = [interpolate(v.split()[0], args) for k, v in instructions if k == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", b) for b in bases), bases
    runs = " ".join(v for k, v in instructions if k == "RUN")
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), "the project must be pip-installed from ."
    assert "[dev]" not in runs
    users = [v for k, v in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    (entrypoint,) = [_exec_form(v) for k, v in instructions if k == "ENTRYPOINT"]
    assert entrypoint == ["reconnect"]
    assert ("CMD", '["worker"]') in instructions


def test_entrypoint_is_the_project_console_script():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "reconnect" in scripts


def _commands(compose) -> dict[str, tuple[str, ...]]:
    out = {}
    for name, spec in compose["services"].items():
        if spec.get("build"):
            assert "entrypoint" not in spec, f"{name}: keep the image's `reconnect` entrypoint"
            out[name] = tuple(_exec_form(spec["command"]) if isinstance(spec["command"], str) else spec["command"])
    return out


def test_services_run_known_reconnect_commands(compose):
    commands = _commands(compose)
    assert commands == {"worker": ("worker",), "topics-init": ("topics", "create"), "caseload": ("caseload",),
                        "webhook-bridge": ("bridge",)}
    assert set(commands.values()) <= RECONNECT_COMMANDS
    for name in commands:
        assert compose["services"][name]["build"]["context"] == "."
        assert (REPO_ROOT / compose["services"][name]["build"]["dockerfile"]).is_file()


def test_reconnect_commands_exist_in_the_cli(compose):
    """The subcommands the stack runs resolve in the real click command tree."""
    import importlib

    import click
    from click.testing import CliRunner

    target = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["reconnect"]
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    entry = getattr(module, attribute)
    # The console script may be the click group itself or a plain function that calls it.
    root = entry if isinstance(entry, click.Group) else getattr(module, "cli")
    assert isinstance(root, click.Group)
    for argv in _commands(compose).values():
        command = root
        for word in argv:
            assert isinstance(command, click.Group), f"`reconnect {' '.join(argv)}`: {command.name} has no subcommands"
            command = command.get_command(click.Context(command), word)
            assert command is not None, f"`reconnect {' '.join(argv)}` does not exist in {module_name}"
        result = CliRunner().invoke(root, [*argv, "--help"])
        assert result.exit_code == 0, result.output


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch(path, pattern) or fnmatch(path.split("/")[0], pattern):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_out_and_the_package_in():
    patterns = [l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.startswith("#")]
    for secret in (".env", ".env.production", ".git", ".venv", "var", "tests"):
        assert _ignored(secret, patterns), f".dockerignore must exclude {secret}"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= {package.split(".")[0] for package in pyproject["tool"]["setuptools"]["packages"]}
    for path in sorted(needed):
        assert not _ignored(path, patterns), f".dockerignore excludes {path}, which `pip install .` needs"
    for artifact in (REPO_ROOT / "models" / "artifacts").glob("*.skops"):
        assert not _ignored(str(artifact.relative_to(REPO_ROOT)), patterns)
