"""The deployable stack (deploy/) is what the README says, valid, and holds no secret.

There is no Docker engine, Compose or Helm here, so these tests check the stack from its files:
deploy/docker-compose.yaml interpolated as Compose does with deploy/.env.example and validated
against the Compose specification's JSON schema (as check-jsonschema ships it); each Airflow
service's command parsed by the installed Airflow 3 CLI; the `leadsla_store` connection resolved
by the store's own code to the compose PostgreSQL server; the other connections loaded by Airflow's
local-filesystem secrets backend from deploy/connections.example.yaml; no secret literal anywhere;
the README's table of services; and deploy/helm/values.yaml against the chart keys it may use.
Each check is a function returning its findings, and each test also plants the problem it guards
against and sees it reported. What stays unverified is listed in
docs/decisions/2026-12-06-deployable-stack.md.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.resources
import io
import json
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from leadsla.cli import build_parser as leadsla_parser
from leadsla.store.connection import resolve_url

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
CONNECTIONS_EXAMPLE = DEPLOY / "connections.example.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
HELM_KEYS_SCHEMA = DEPLOY / "helm" / "chart-keys.schema.json"
README = ROOT / "README.md"
REQUIREMENTS = ROOT / "requirements.txt"
DOCKERFILE = ROOT / "Dockerfile"
PLACEHOLDER = "CHANGE_ME"
# Environment names holding a secret: their value must come from elsewhere (${VAR} or a Secret).
SECRET_NAME = re.compile(r"PASSWORD|SECRET_KEY|JWT_SECRET|FERNET_KEY|TOKEN", re.IGNORECASE)
# Fields of a connection that hold a secret.
SECRET_FIELDS = ("password", "security_token", "token", "path")
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
}


# -- Compose interpolation ----------------------------------------------------------------------


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose .env file (comments and blank lines skipped)."""
    values = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {line!r}")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def interpolate(value: Any, env: Mapping[str, str], errors: list[str], where: str = "") -> Any:
    """`value` with Compose's variable syntax replaced in every string ($$, $VAR, ${VAR},
    ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+other}); a required
    variable that is unset (or empty, with `:`) adds Compose's error to `errors`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, errors, f"{where}.{k}".lstrip(".")) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, errors, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if op in ("-", ":-"):
            return env[name] if present else arg
        if op in ("?", ":?"):
            if not present:
                errors.append(f"{where}: required variable {name} is missing a value: {arg}")
                return ""
            return env[name]
        if op in ("+", ":+"):
            return arg if present else ""
        return env.get(name, "")

    return _VARIABLE.sub(replace, value)


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as YAML gives it (anchors and `<<` merges resolved), not interpolated."""
    return yaml.safe_load(path.read_text())


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return compose.get("services") or {}


def env_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (Compose allows a list of KEY=VALUE too)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


# -- checks: Compose ----------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as check-jsonschema vendors it (vendor.compose-spec)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def schema_problems(document: Any, schema: Mapping[str, Any]) -> list[str]:
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def airflow_argvs(compose: Mapping[str, Any]) -> dict[str, list[list[str]]]:
    """Service -> the Airflow CLI argument lists it runs: its command (the image's entrypoint runs
    `airflow <command>`), `airflow ...` lines of a bash -c script, and `airflow ...` healthchecks."""
    found: dict[str, list[list[str]]] = {}
    for name, service in services(compose).items():
        if name not in AIRFLOW_SERVICES:
            continue
        argvs = []
        command = service.get("command")
        if isinstance(command, str):
            argvs.append(shlex.split(command))
        elif isinstance(command, list) and command[:1] == ["-c"]:
            argvs += [argv[1:] for argv in _script_commands(command[1]) if argv[:1] == ["airflow"]]
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[:1] == ["CMD-SHELL"]:
            argvs += [argv[1:] for argv in _script_commands(test[1]) if argv[:1] == ["airflow"]]
        found[name] = argvs
    return found


def _script_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell line joined by && or ||, `/entrypoint` dropped."""
    for part in re.split(r"&&|\|\||;|\n", script):
        argv = shlex.split(part.replace("$$", "$"))
        if argv[:1] == ["/entrypoint"]:
            argv = argv[1:]
        if argv:
            yield argv


def airflow_cli_problems(argvs: dict[str, list[list[str]]]) -> list[str]:
    """Argument lists the installed Airflow CLI (its own commands and its providers') rejects."""
    from airflow.cli import cli_parser

    parser = cli_parser.get_parser()
    problems = []
    for name, lists in argvs.items():
        for argv in lists:
            said = io.StringIO()
            try:
                with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
                    args = parser.parse_args(argv)
                verdict = None if hasattr(args, "func") else "no Airflow command"
            except SystemExit:
                verdict = (said.getvalue().strip().splitlines() or ["rejected"])[-1]
            if verdict is not None:
                problems.append(f"{name}: `airflow {' '.join(argv)}` is not an Airflow command: {verdict}")
    return problems


def installed_by_image_problems(env: Mapping[str, str], requirements: Path = REQUIREMENTS) -> list[str]:
    """Modules the stack's Airflow settings name (auth manager, secrets backend, executor, database
    and broker drivers) that no distribution installed through requirements.txt provides."""
    from tests.unit.test_packaging import dependency_closure, module_index, read_requirements

    closure, _ = dependency_closure(p.requirement for p in read_requirements(requirements).values())
    named = {
        "AIRFLOW__CORE__AUTH_MANAGER": env.get("AIRFLOW__CORE__AUTH_MANAGER", "").rpartition(".")[0],
        "AIRFLOW__SECRETS__BACKEND": env.get("AIRFLOW__SECRETS__BACKEND", "").rpartition(".")[0],
    }
    if env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor":
        named["AIRFLOW__CORE__EXECUTOR"] = "airflow.providers.celery.executors.celery_executor"
    for key in (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
    ):
        scheme = urlsplit(env.get(key, "")).scheme
        named[key] = {"redis": "redis"}.get(scheme) or scheme.rpartition("+")[2]
    return [
        f"{key} needs {module}, which requirements.txt does not install"
        for key, module in named.items()
        if module and not module_index().get(module, frozenset()) & closure
    ]


def secret_literal_problems(compose: Mapping[str, Any]) -> list[str]:
    """Secrets written into the (not interpolated) compose file: a secret-named variable whose value
    is not one ${VAR} reference, and a URL whose password is not one."""
    problems = []
    for name, service in services(compose).items():
        for key, value in env_of(service).items():
            if SECRET_NAME.search(key) and value and not re.fullmatch(r"\$\{[^}]+\}", value):
                problems.append(f"{name}: {key} holds a literal value: take it from deploy/.env")
            for url in re.findall(r"[a-z][a-z0-9+.-]*://\S+", value):
                password = urlsplit(url).password
                if password and not re.fullmatch(r"\$\{[^}]+\}", password):
                    problems.append(f"{name}: {key} holds a URL with a literal password")
    return problems


def placeholder_problems(env_example: Mapping[str, str]) -> list[str]:
    """Secret-named variables of the example .env that hold anything but the placeholder."""
    return [
        f"{ENV_EXAMPLE.name}: {key} must be {PLACEHOLDER}, not a value"
        for key, value in env_example.items()
        if SECRET_NAME.search(key) and value != PLACEHOLDER
    ]


def store_problems(compose: Mapping[str, Any]) -> list[str]:
    """The `leadsla_store` connection (AIRFLOW_CONN_LEADSLA_STORE, interpolated) must name a
    PostgreSQL server of the stack, with the user, password and database that server is created
    with, apart from Airflow's metadata database."""
    problems = []
    metadata_hosts = set()
    urls = set()
    for name in AIRFLOW_SERVICES & services(compose).keys():
        env = env_of(services(compose)[name])
        if not env.get("AIRFLOW_CONN_LEADSLA_STORE"):
            problems.append(f"{name}: AIRFLOW_CONN_LEADSLA_STORE is not set")
            continue
        urls.add(env["AIRFLOW_CONN_LEADSLA_STORE"])
        metadata_hosts.add(urlsplit(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")).hostname)
    if len(urls) > 1:
        problems.append("the Airflow services name different leadsla_store connections")
    for conn in urls:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_LEADSLA_STORE", conn)
            mp.delenv("LEADSLA_STORE_URL", raising=False)
            url = urlsplit(resolve_url())
        if url.scheme != "postgresql+psycopg":
            problems.append(f"leadsla_store resolves to {url.scheme}, not PostgreSQL")
            continue
        server = services(compose).get(url.hostname or "")
        if server is None or not str(server.get("image", "")).startswith("postgres:"):
            problems.append(f"leadsla_store's host {url.hostname} is not a postgres service of the stack")
            continue
        created = env_of(server)
        wanted = {
            "POSTGRES_USER": url.username,
            "POSTGRES_PASSWORD": url.password,
            "POSTGRES_DB": url.path[1:],
        }
        problems += [
            f"leadsla_store's {key.removeprefix('POSTGRES_').lower()} is not the one {url.hostname} "
            "is created with"
            for key, value in wanted.items()
            if created.get(key) != value
        ]
        if url.hostname in metadata_hosts:
            problems.append(f"leadsla_store shares {url.hostname} with Airflow's metadata database")
    return problems


def connections_problems(compose: Mapping[str, Any], connections_file: Path, expected: set[str]) -> list[str]:
    """The secrets backend of the Airflow services reads the file their compose secret mounts, and
    the example file gives every expected connection (Airflow's own backend loads it) with
    placeholders for its secrets and no stand-in address."""
    from airflow.secrets.local_filesystem import LocalFilesystemBackend

    problems = []
    for name in sorted(AIRFLOW_SERVICES & services(compose).keys()):
        service = services(compose)[name]
        env = env_of(service)
        mounted = {
            "/run/secrets/" + (s["target"] if isinstance(s, dict) else s)
            for s in service.get("secrets") or []
        }
        kwargs = json.loads(env.get("AIRFLOW__SECRETS__BACKEND_KWARGS") or "{}")
        if env.get("AIRFLOW__SECRETS__BACKEND") != "airflow.secrets.local_filesystem.LocalFilesystemBackend":
            problems.append(f"{name}: the connections' secrets backend is not set")
        elif kwargs.get("connections_file_path") not in mounted:
            problems.append(f"{name}: the secrets backend reads a file no compose secret mounts")
    backend = LocalFilesystemBackend(connections_file_path=str(connections_file))
    for conn_id in sorted(expected):
        conn = backend.get_connection(conn_id)
        if conn is None:
            problems.append(f"{connections_file.name} lacks {conn_id}")
            continue
        fields = {"password": conn.password, "login": conn.login, **conn.extra_dejson}
        fields |= fields.pop("config", None) or {}
        for field in SECRET_FIELDS:
            if fields.get(field) not in (None, PLACEHOLDER):
                problems.append(f"{connections_file.name}: {conn_id}.{field} must be {PLACEHOLDER}")
        text = json.dumps([conn.host, conn.extra_dejson])
        if re.search(r"127\.0\.0\.1|localhost|sandbox", text):
            problems.append(f"{connections_file.name}: {conn_id} points at a local stand-in")
    return problems


def sandbox_problems(compose: Mapping[str, Any]) -> list[str]:
    """Anything of the sandbox (stand-ins, demo org, their CA) in the production stack."""
    text = json.dumps(compose).lower()
    return [
        f"the stack mentions {word}" for word in ("sandbox", "devstack", "requests_ca_bundle") if word in text
    ]


# -- checks: README -----------------------------------------------------------------------------


def readme_section(title: str, readme: str) -> str:
    match = re.search(rf"(?ms)^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme)
    assert match, f"README.md has no '## {title}' section"
    return match[1]


def readme_services(section: str) -> dict[str, str]:
    """Service -> the `runs` cell of the section's table (| `service` | `runs` | what it does |)."""
    rows = re.findall(r"(?m)^\| `([a-z0-9-]+)` \| (.+?) \| .+\|$", section)
    return {service: runs.strip() for service, runs in rows}


def readme_problems(compose: Mapping[str, Any], documented: Mapping[str, str]) -> list[str]:
    """The README's table of services against the compose file: the same services, and each one
    documented as running its image (PostgreSQL, Redis) or its Airflow command."""
    problems = []
    for name in sorted(services(compose).keys() - documented.keys()):
        problems.append(f"README.md does not say what {name} does")
    for name in sorted(documented.keys() - services(compose).keys()):
        problems.append(f"README.md documents {name}, which the compose file does not run")
    for name in sorted(documented.keys() & services(compose).keys()):
        service, runs = services(compose)[name], documented[name]
        command = service.get("command")
        if isinstance(command, str):
            expected = [f"`airflow {command}`"]
        elif isinstance(command, list):
            expected = [f"`{' '.join(argv)}`" for argv in _script_commands(command[1])]
        else:
            expected = [f"`{service.get('image')}`"]
        if not all(e in runs for e in expected):
            problems.append(f"README.md says {name} runs {runs}, the compose file {', '.join(expected)}")
    return problems


def readme_connection_ids(readme: str) -> set[str]:
    section = readme_section("Pointing it at your real systems", readme)
    return set(re.findall(r"(?m)^\| `([a-z_]+)`", section))


# -- checks: Helm -------------------------------------------------------------------------------


def helm_problems(values: Mapping[str, Any], airflow_version: str) -> list[str]:
    """The values' choices: CeleryExecutor on the project's image and Airflow version, an external
    metadata database, the dag processor, triggerer and workers, and every connection from a Secret."""
    problems = []
    image = (values.get("images") or {}).get("airflow") or {}
    if values.get("executor") != "CeleryExecutor":
        problems.append(f"executor is {values.get('executor')}, not CeleryExecutor")
    if not image.get("repository") or str(image["repository"]).startswith("apache/airflow"):
        problems.append("images.airflow.repository is not the image built from the Dockerfile")
    if values.get("airflowVersion") != airflow_version:
        problems.append(f"airflowVersion {values.get('airflowVersion')} is not the image's {airflow_version}")
    if (values.get("postgresql") or {}).get("enabled", True):
        problems.append("postgresql.enabled: the chart's bundled PostgreSQL instead of yours")
    if not (values.get("data") or {}).get("metadataSecretName"):
        problems.append("data.metadataSecretName: no Secret for the metadata database")
    for component in ("dagProcessor", "triggerer"):
        if not (values.get(component) or {}).get("enabled"):
            problems.append(f"{component}.enabled is not true")
    if int((values.get("workers") or {}).get("replicas") or 0) < 2:
        problems.append("workers.replicas is below 2")
    from_secrets = {s.get("envName") for s in values.get("secret") or []}
    if "AIRFLOW_CONN_LEADSLA_STORE" not in from_secrets:
        problems.append("the leadsla_store connection does not come from a Secret")
    problems += [f"{path} holds a literal secret" for path in _secret_literals(values)]
    return problems


# Chart keys that take a secret's value itself (each has a *SecretName twin naming a Secret instead).
_LITERAL_SECRET_KEYS = {"fernetKey", "webserverSecretKey", "apiSecretKey", "jwtSecret", "pass", "brokerUrl"}


def _secret_literals(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}".lstrip(".")
            if (key in _LITERAL_SECRET_KEYS or re.search(r"(?i)password|token", key)) and item:
                yield here
            yield from _secret_literals(item, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _secret_literals(item, f"{path}[{i}]")


def image_airflow_version(dockerfile: Path = DOCKERFILE) -> str:
    match = re.search(r"(?m)^FROM apache/airflow:(\d+\.\d+\.\d+)-python", dockerfile.read_text())
    assert match, "the Dockerfile is not FROM apache/airflow:<version>-python<version>"
    return match[1]


# -- tests --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    errors: list[str] = []
    interpolated = interpolate(load_compose(), read_env_file(ENV_EXAMPLE), errors)
    assert errors == []
    return interpolated


def test_the_compose_file_is_valid_against_the_compose_specification(compose) -> None:
    schema = compose_schema()
    assert schema_problems(compose, schema) == []
    assert schema_problems(load_compose(), schema) == []  # before interpolation too

    planted = copy.deepcopy(compose)
    planted["services"]["airflow-worker"]["healthcheck"]["intervall"] = "30s"
    planted["services"]["redis"]["restart"] = 3
    problems = schema_problems(planted, schema)
    assert any("intervall" in p for p in problems) and any("redis.restart" in p for p in problems), problems


def test_compose_refuses_to_start_without_the_secrets_of_deploy_env() -> None:
    errors: list[str] = []
    interpolate(load_compose(), {}, errors)
    required = {re.search(r"required variable (\w+)", e)[1] for e in errors}
    assert required == {
        "AIRFLOW_DB_PASSWORD",
        "LEADSLA_STORE_PASSWORD",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_ADMIN_PASSWORD",
    }
    # Every required variable has its line in the example .env.
    assert required <= read_env_file(ENV_EXAMPLE).keys()


def test_the_stack_runs_every_airflow_3_component_on_celery(compose) -> None:
    assert AIRFLOW_SERVICES | {"postgres", "leadsla-store", "redis"} == services(compose).keys()
    argvs = airflow_argvs(compose)
    commands = {name: argvs[name][0] for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
        "airflow-worker": ["celery", "worker"],
    }
    assert ["db", "migrate"] not in argvs[
        "airflow-init"
    ]  # the image's entrypoint migrates (_AIRFLOW_DB_MIGRATE)
    assert env_of(services(compose)["airflow-init"])["_AIRFLOW_DB_MIGRATE"] == "true"
    executor = {env_of(s).get("AIRFLOW__CORE__EXECUTOR") for n, s in services(compose).items() if n in argvs}
    assert executor == {"CeleryExecutor"}
    # Workers scale: no fixed name or published port, and more than one by default.
    worker = services(compose)["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker and worker["deploy"]["replicas"] >= 2
    # Each service built from the project's Dockerfile, with a healthcheck.
    for name in AIRFLOW_SERVICES:
        build = services(compose)[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
    for name in services(compose).keys() - {"airflow-init"}:
        assert services(compose)[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"

    # One Airflow CLI start for the stack's commands and the planted ones: Airflow 2's webserver,
    # a misspelt command and a misspelt option.
    planted = {
        "planted-old": [["webserver"]],
        "planted-typo": [["dag_processor"], ["jobs", "check", "--job", "X"]],
    }
    problems = airflow_cli_problems({**argvs, **planted})
    assert [p for p in problems if not p.startswith("planted-")] == []
    assert len(problems) == 3 and "Please use `airflow api-server`" in problems[0], problems
    # The store's schema upgrade in airflow-init is a leadsla command.
    script = services(compose)["airflow-init"]["command"][1]
    leadsla = [argv for argv in _script_commands(script) if argv[0] == "leadsla"]
    assert leadsla == [["leadsla", "store", "upgrade"]]
    leadsla_parser().parse_args(leadsla[0][1:])

    # What those settings name is in the image.
    for name in AIRFLOW_SERVICES:
        assert installed_by_image_problems(env_of(services(compose)[name])) == [], name
    planted_env = env_of(worker) | {
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.providers.keycloak.auth_manager.keycloak_auth_manager.M",
        "AIRFLOW__CELERY__BROKER_URL": "sqs://",
    }
    assert installed_by_image_problems(planted_env) == [
        "AIRFLOW__CORE__AUTH_MANAGER needs airflow.providers.keycloak.auth_manager.keycloak_auth_manager, "
        "which requirements.txt does not install",
        "AIRFLOW__CELERY__BROKER_URL needs sqs, which requirements.txt does not install",
    ]
    # The Celery healthcheck's app module exists.
    assert "airflow.providers.celery.executors.celery_executor.app" in worker["healthcheck"]["test"][1]
    from airflow.providers.celery.executors import celery_executor

    assert hasattr(celery_executor, "app")


def test_the_store_connection_is_the_stacks_own_postgresql(compose) -> None:
    assert store_problems(compose) == []
    url = env_of(services(compose)["airflow-worker"])["AIRFLOW_CONN_LEADSLA_STORE"]
    assert urlsplit(url).hostname == "leadsla-store"

    planted = copy.deepcopy(compose)
    for name in AIRFLOW_SERVICES:
        env = planted["services"][name]["environment"]
        env["AIRFLOW_CONN_LEADSLA_STORE"] = env["AIRFLOW_CONN_LEADSLA_STORE"].replace(
            "@leadsla-store", "@postgres"
        )
    assert any("is not the one postgres is created with" in p for p in store_problems(planted))
    del planted["services"]["airflow-worker"]["environment"]["AIRFLOW_CONN_LEADSLA_STORE"]
    assert "airflow-worker: AIRFLOW_CONN_LEADSLA_STORE is not set" in store_problems(planted)
    planted = copy.deepcopy(compose)
    for name in AIRFLOW_SERVICES:
        planted["services"][name]["environment"]["AIRFLOW_CONN_LEADSLA_STORE"] = (
            '{"conn_type": "generic", "extra": {"url": "sqlite:////opt/airflow/store.db"}}'
        )
    assert store_problems(planted) == ["leadsla_store resolves to sqlite, not PostgreSQL"]


def test_the_other_connections_come_from_the_mounted_secret_with_placeholders(
    compose, tmp_path: Path
) -> None:
    expected = readme_connection_ids(README.read_text()) - {"leadsla_store"}
    assert expected == {"salesforce_default", "slack_api_default", "smtp_default", "apprise_sms"}
    assert connections_problems(compose, CONNECTIONS_EXAMPLE, expected) == []
    assert compose["secrets"]["airflow_connections"]["file"] == "./secrets/connections.yaml"
    # The real file stays out of git and out of the image's build context.
    for path in ("deploy/secrets/connections.yaml", "deploy/.env"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{path} is not git-ignored"
    assert "deploy" in (ROOT / ".dockerignore").read_text().split()

    # Planted: a real token, a stand-in address and a missing connection.
    example = yaml.safe_load(CONNECTIONS_EXAMPLE.read_text())
    example["slack_api_default"]["password"] = "xoxb-123-456-abc"
    example["smtp_default"]["host"] = "127.0.0.1"
    del example["apprise_sms"]
    planted = tmp_path / "connections.yaml"
    planted.write_text(yaml.safe_dump(example))
    problems = connections_problems(compose, planted, expected)
    assert sorted(problems) == [
        "connections.yaml lacks apprise_sms",
        "connections.yaml: slack_api_default.password must be CHANGE_ME",
        "connections.yaml: smtp_default points at a local stand-in",
    ], problems


def test_no_secret_is_written_in_the_stack() -> None:
    raw = load_compose()
    assert secret_literal_problems(raw) == []
    assert placeholder_problems(read_env_file(ENV_EXAMPLE)) == []
    assert sandbox_problems(raw) == []

    planted = copy.deepcopy(raw)
    env = planted["services"]["airflow-worker"]["environment"]  # its own mapping, not the anchor's
    env["AIRFLOW__CORE__FERNET_KEY"] = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy"
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "postgresql+psycopg://airflow:hunter2@postgres/airflow"
    env["REQUESTS_CA_BUNDLE"] = "/opt/sandbox/ca.pem"
    planted["services"]["leadsla-store"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    assert sorted(secret_literal_problems(planted)) == [
        "airflow-worker: AIRFLOW__CORE__FERNET_KEY holds a literal value: take it from deploy/.env",
        "airflow-worker: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN holds a URL with a literal password",
        "leadsla-store: POSTGRES_PASSWORD holds a literal value: take it from deploy/.env",
    ]
    assert sandbox_problems(planted) == [
        "the stack mentions sandbox",
        "the stack mentions requests_ca_bundle",
    ]
    assert placeholder_problems({"AIRFLOW_JWT_SECRET": "s3cret", "AIRFLOW_UID": "50000"}) == [
        f"{ENV_EXAMPLE.name}: AIRFLOW_JWT_SECRET must be {PLACEHOLDER}, not a value"
    ]


def test_the_readme_says_what_each_service_runs(compose) -> None:
    documented = readme_services(readme_section("Running the stack", README.read_text()))
    assert readme_problems(load_compose(), documented) == []

    planted = dict(documented)
    del planted["airflow-triggerer"]
    planted["airflow-webserver"] = "`airflow webserver`"
    planted["airflow-scheduler"] = "`airflow scheduler --num-runs 5`"
    assert readme_problems(load_compose(), planted) == [
        "README.md does not say what airflow-triggerer does",
        "README.md documents airflow-webserver, which the compose file does not run",
        "README.md says airflow-scheduler runs `airflow scheduler --num-runs 5`, "
        "the compose file `airflow scheduler`",
    ]


def test_the_helm_values_choose_celery_on_the_projects_image() -> None:
    values = yaml.safe_load(HELM_VALUES.read_text())
    version = image_airflow_version()
    assert schema_problems(values, json.loads(HELM_KEYS_SCHEMA.read_text())) == []
    assert helm_problems(values, version) == []
    assert {s["envName"] for s in values["secret"] if s["envName"].startswith("AIRFLOW_CONN_")} == {
        f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in readme_connection_ids(README.read_text())
    }
    # The Airflow version the stack runs is the image's, which requirements.txt pins too.
    assert f"apache-airflow=={version}\n" in (ROOT / "requirements.txt").read_text()

    planted = copy.deepcopy(values)
    planted["executor"] = "LocalExecutor"
    planted["workers"]["replicas"] = 1
    planted["dagProcessor"]["enabled"] = False
    planted["postgresql"]["enabled"] = True
    planted["fernetKey"] = "Zm9vYmFy"
    planted["secret"] = [s for s in planted["secret"] if s["envName"] != "AIRFLOW_CONN_LEADSLA_STORE"]
    assert helm_problems(planted, version) == [
        "executor is LocalExecutor, not CeleryExecutor",
        "postgresql.enabled: the chart's bundled PostgreSQL instead of yours",
        "dagProcessor.enabled is not true",
        "workers.replicas is below 2",
        "the leadsla_store connection does not come from a Secret",
        "fernetKey holds a literal secret",
    ]
    planted = copy.deepcopy(values)
    planted["workers"]["replica"] = 3
    planted["dags"]["gitsync"] = {"enabled": True}
    problems = schema_problems(planted, json.loads(HELM_KEYS_SCHEMA.read_text()))
    assert any("'replica'" in p for p in problems) and any("'gitsync'" in p for p in problems), problems


def test_the_stack_runs_celery_as_the_distributed_test_proved_it(compose) -> None:
    """The Celery settings tests/distributed/ runs two workers with (a worker killed mid-delivery
    loses nothing) are the compose file's and the Helm values', and a dead worker's task is retried
    within minutes; a setting dropped or changed is named."""
    from tests.distributed_stack import CELERY_SETTINGS

    def celery_problems(env: Mapping[str, str], helm_config: Mapping[str, Any]) -> list[str]:
        problems = [
            f"{k} is {env.get(k)!r}, not {v!r}" for k, v in CELERY_SETTINGS.items() if env.get(k) != v
        ]
        for key, value in CELERY_SETTINGS.items():
            section, _, option = key.removeprefix("AIRFLOW__").lower().partition("__")
            if key != "AIRFLOW__CORE__EXECUTOR" and helm_config.get(section, {}).get(option) != value:
                problems.append(f"helm config.{section}.{option} is not {value!r}")
        timeout = int(env.get("AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "300"))
        if timeout > 180:
            problems.append(f"a dead worker's task waits {timeout} s for its retry")
        if not env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC", "").startswith(
            "postgresql+psycopg_async://"
        ):
            problems.append("no psycopg async metadata connection")
        return problems

    values = yaml.safe_load(HELM_VALUES.read_text())
    for name in AIRFLOW_SERVICES:
        assert celery_problems(env_of(services(compose)[name]), values["config"]) == [], name
    planted = dict(env_of(services(compose)["airflow-worker"]))
    del (
        planted["AIRFLOW__CELERY__TASK_ACKS_LATE"],
        planted["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"],
    )
    helm = copy.deepcopy(values["config"])
    helm["celery"]["worker_prefetch_multiplier"] = "4"
    assert celery_problems(planted, helm) == [
        "AIRFLOW__CELERY__TASK_ACKS_LATE is None, not 'True'",
        "helm config.celery.worker_prefetch_multiplier is not '1'",
        "a dead worker's task waits 300 s for its retry",
    ]
