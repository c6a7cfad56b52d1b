"""infra/: the deployment files parse, hang together, and agree with the project and its README.

Nothing in infra/ can be deployed here (no Docker, no Kubernetes): these tests read the files only,
offline and fast. When `kubernetes-validate` is installed, built-in kinds are also checked against the
Kubernetes OpenAPI schemas it ships.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dask.utils import parse_bytes
from packaging.specifiers import SpecifierSet

from icecube_cloud.config import parse_config

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
TERRAFORM = INFRA / "terraform" / "bucket.tf"
README = INFRA / "README.md"
SPEC = REPO.parent / "shared" / "SPEC.md"
KUBERNETES_VERSION = "1.30.0"  # the oldest cluster these manifests are meant for

Doc = dict[str, Any]


# --- loading --------------------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted([*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml")])


def _load_yaml(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def _manifests() -> tuple[tuple[Path, Doc], ...]:
    """Every Kubernetes document under infra/k8s (kustomization.yaml is not a resource)."""
    return tuple(
        (path, doc)
        for path in _yaml_files()
        if path.is_relative_to(K8S) and path.name != "kustomization.yaml"
        for doc in _load_yaml(path)
    )


def _is_example(path: Path) -> bool:
    return path.name.endswith(".example.yaml")


def _deployed() -> list[Doc]:
    return [doc for path, doc in _manifests() if not _is_example(path)]


def _one(kind: str, docs: list[Doc] | None = None) -> Doc:
    found = [doc for doc in (_deployed() if docs is None else docs) if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _pod_specs(doc: Doc) -> list[tuple[str, Doc]]:
    """(role, PodSpec) of every pod a manifest makes."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return [(kind, spec["template"]["spec"])]
    if kind == "DaskCluster":
        return [(f"{kind} {role}", spec[role]["spec"]) for role in ("scheduler", "worker")]
    return []


def _containers(doc: Doc) -> Iterator[tuple[str, Doc]]:
    for role, pod in _pod_specs(doc):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            yield f"{doc['metadata']['name']} {role} {container['name']}", container


def _env(container: Doc) -> dict[str, Doc]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _dask_container(role: str) -> Doc:
    containers: list[Doc] = _one("DaskCluster")["spec"][role]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def _image_tag(image: str) -> str | None:
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def _cpu(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


@functools.cache
def _pyproject() -> Doc:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _example_secrets() -> dict[str, Doc]:
    return {
        doc["metadata"]["name"]: doc
        for path, doc in _manifests()
        if _is_example(path) and doc["kind"] == "Secret"
    }


# --- every file -----------------------------------------------------------------------------------


def test_infra_has_the_expected_pieces() -> None:
    assert DOCKERFILE.is_file() and DOCKERIGNORE.is_file() and TERRAFORM.is_file()
    assert (K8S / "kustomization.yaml").is_file() and README.is_file()
    kinds = {doc["kind"] for doc in _deployed()}
    assert {"Namespace", "DaskCluster", "DaskAutoscaler", "Deployment", "Service"} <= kinds
    assert {"StatefulSet", "Job"} <= kinds


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_yaml_parses(path: Path) -> None:
    docs = _load_yaml(path)
    assert docs, "no document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_json_parses() -> None:
    for path in sorted(INFRA.rglob("*.json")):
        json.loads(path.read_text())


@pytest.mark.parametrize(
    "doc",
    [doc for _, doc in _manifests()],
    ids=[f"{p.name}:{d.get('kind')}" for p, d in _manifests()],
)
def test_manifest_has_api_version_kind_and_name(doc: Doc) -> None:
    assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"]
    assert isinstance(doc.get("kind"), str) and doc["kind"]
    name = doc.get("metadata", {}).get("name")
    assert isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def test_kustomization_lists_exactly_the_manifests() -> None:
    (kustomization,) = _load_yaml(K8S / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    missing = [name for name in listed if not (K8S / name).is_file()]
    assert missing == []
    files = {
        str(path.relative_to(K8S))
        for path in _yaml_files()
        if path.is_relative_to(K8S) and path.name != "kustomization.yaml"
    }
    deployable = {name for name in files if not name.endswith(".example.yaml")}
    assert set(listed) == deployable, "every manifest listed, no example applied"
    namespace = _one("Namespace")["metadata"]["name"]
    assert kustomization["namespace"] == namespace


def test_kustomization_image_entry_names_the_image_in_use() -> None:
    (kustomization,) = _load_yaml(K8S / "kustomization.yaml")
    image = _dask_container("worker")["image"]
    (entry,) = kustomization["images"]
    assert image == f"{entry['name']}:{entry['newTag']}"


# --- containers -----------------------------------------------------------------------------------


def _all_containers() -> list[tuple[str, Doc]]:
    return [item for _, doc in _manifests() for item in _containers(doc)]


@pytest.mark.parametrize(
    "container", [c for _, c in _all_containers()], ids=[n for n, _ in _all_containers()]
)
def test_container_image_is_pinned(container: Doc) -> None:
    tag = _image_tag(container["image"])
    assert tag and tag != "latest", f"{container['image']}: pin a version"


@pytest.mark.parametrize(
    "container", [c for _, c in _all_containers()], ids=[n for n, _ in _all_containers()]
)
def test_container_has_requests_and_limits(container: Doc) -> None:
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(part, {})), f"resources.{part}"
    assert _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"])
    assert _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"])


def test_long_running_containers_have_readiness_probes() -> None:
    for doc in _deployed():
        if doc["kind"] == "Job":
            continue  # runs to completion; nothing routes traffic to it
        for name, container in _containers(doc):
            assert "readinessProbe" in container, name


def test_containers_hold_no_literal_secrets() -> None:
    for name, container in _all_containers():
        for var, entry in _env(container).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", var):
                assert "secretKeyRef" in entry.get("valueFrom", {}), (
                    f"{name}: {var} must come from a Secret"
                )


def test_secret_references_resolve_to_example_secrets() -> None:
    secrets = _example_secrets()
    for name, container in _all_containers():
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in secrets, f"{name}: Secret {ref['name']} has no example"
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{name}: {ref}"


# --- secrets --------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"REPLACE_ME|example|\.invalid")


def test_secrets_exist_only_as_examples_with_placeholders() -> None:
    for path, doc in _manifests():
        if doc["kind"] == "Secret":
            assert _is_example(path), f"{path.name}: real Secrets are never committed"
            assert "data" not in doc, "stringData only: base64 would hide what is in there"
            for key, value in doc["stringData"].items():
                if re.search(r"KEY|SECRET|PASSWORD|TOKEN|USER|ENDPOINT", key):
                    assert _PLACEHOLDER.search(str(value)), (
                        f"{path.name}: {key} is not a placeholder"
                    )
    assert set(_example_secrets()) == {"icecube-s3", "pgstac-db"}


def test_no_credentials_anywhere_in_infra() -> None:
    for path in INFRA.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), f"{path}: AWS access key id"
            assert "PRIVATE KEY-----" not in text, f"{path}: private key"


# --- dask cluster ---------------------------------------------------------------------------------


def test_dask_cluster_scheduler_and_workers_share_the_pinned_project_image() -> None:
    scheduler, worker = _dask_container("scheduler"), _dask_container("worker")
    assert scheduler["image"] == worker["image"]
    # Workers unpickle icecube_cloud tasks: the image must be this release of the project.
    assert _image_tag(worker["image"]) == _pyproject()["project"]["version"]
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    assert worker["args"][:2] == ["dask", "worker"]
    assert "$(DASK_WORKER_NAME)" in worker["args"], "the operator matches workers by this name"


def test_dask_scheduler_service_exposes_comm_and_dashboard() -> None:
    cluster = _one("DaskCluster")
    service = cluster["spec"]["scheduler"]["service"]
    ports = {port["name"]: port for port in service["ports"]}
    # The operator looks the ports up by these names.
    assert ports["tcp-comm"]["port"] == 8786 and ports["http-dashboard"]["port"] == 8787
    container_ports = {p["name"]: p["containerPort"] for p in _dask_container("scheduler")["ports"]}
    assert container_ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert {p["targetPort"] for p in ports.values()} <= set(container_ports)
    assert service["selector"] == {
        "dask.org/cluster-name": cluster["metadata"]["name"],
        "dask.org/component": "scheduler",
    }


def test_scheduler_serves_the_http_api_the_autoscaler_polls() -> None:
    routes = _env(_dask_container("scheduler"))["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"][
        "value"
    ]
    parsed = json.loads(routes)
    assert "distributed.http.scheduler.api" in parsed and "distributed.http.health" in parsed


def test_autoscaler_scales_the_cluster_to_zero() -> None:
    autoscaler = _one("DaskAutoscaler")["spec"]
    assert autoscaler["cluster"] == _one("DaskCluster")["metadata"]["name"]
    assert autoscaler["minimum"] == 0
    assert 1 <= autoscaler["maximum"] <= 100


def test_workers_get_s3_credentials_from_a_secret() -> None:
    env = _env(_dask_container("worker"))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == var and not ref.get("optional", False)
    assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_worker_sizing_matches_readme_and_local_cluster() -> None:
    worker = _dask_container("worker")
    requests, limits = worker["resources"]["requests"], worker["resources"]["limits"]
    assert requests == limits, "Guaranteed QoS: builds are not evicted"
    threads = int(_flag(worker["args"], "--nthreads"))
    memory_limit = parse_bytes(_flag(worker["args"], "--memory-limit"))
    assert memory_limit == _bytes(limits["memory"]), "dask spills/pauses before the OOM killer"
    assert threads <= _cpu(limits["cpu"])

    readme = README.read_text()
    match = re.search(r"Each worker pod: \*\*(\d+) CPU, (\d+) GiB, (\d+) thread", readme)
    assert match, "README states the worker size"
    cpu, gib, readme_threads = map(int, match.groups())
    assert (cpu, gib * 2**30, readme_threads) == (_cpu(limits["cpu"]), memory_limit, threads)
    bounds = re.search(r"workers between \*\*(\d+)\*\* and \*\*(\d+)\*\*", readme)
    assert bounds, "README states the autoscaler bounds"
    autoscaler = _one("DaskAutoscaler")["spec"]
    assert tuple(map(int, bounds.groups())) == (autoscaler["minimum"], autoscaler["maximum"])

    # The same shape as the LocalCluster of icecube_cloud/cluster.py: single-threaded workers.
    local = re.search(r"threads_per_worker=(\d+)", (REPO / "icecube_cloud/cluster.py").read_text())
    assert local and int(local.group(1)) == threads


# --- STAC API and database ------------------------------------------------------------------------


def _deployment(name: str) -> Doc:
    (doc,) = [d for d in _deployed() if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    return doc


def _spec_versions() -> dict[str, str]:
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} not found")
    text = SPEC.read_text()
    found = {
        name: re.search(rf"{name} (\d+\.\d+\.\d+)", text)
        for name in ("stac-fastapi-pgstac", "pypgstac")
    }
    return {name: m.group(1) for name, m in found.items() if m}


def test_stac_api_reads_all_five_pg_settings_and_enables_transactions() -> None:
    (container,) = _deployment("stac-api")["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    for var in ("PGUSER", "PGPASSWORD", "PGHOST", "PGPORT", "PGDATABASE"):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "pgstac-db", "key": var}
    assert env["ENABLE_TRANSACTIONS_EXTENSIONS"]["value"] == "true"
    assert container["readinessProbe"]["httpGet"]["path"] == "/"
    assert container["image"].startswith("ghcr.io/stac-utils/stac-fastapi-pgstac:7.")


def test_stac_and_pgstac_versions_match_spec() -> None:
    versions = _spec_versions()
    images = {c["image"] for _, doc in _manifests() for _, c in _containers(doc)}
    if "stac-fastapi-pgstac" in versions:
        assert f"ghcr.io/stac-utils/stac-fastapi-pgstac:{versions['stac-fastapi-pgstac']}" in images
    if "pypgstac" in versions:
        # The pgstac schema in the database and pypgstac must be the very same version.
        pgstac = {i for i in images if i.startswith("ghcr.io/stac-utils/pgstac")}
        assert pgstac and all(_image_tag(i) == f"v{versions['pypgstac']}" for i in pgstac)


def test_migrate_job_runs_pypgstac_migrate() -> None:
    (job,) = [d for d in _deployed() if d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["pypgstac", "migrate"]
    assert {"PGUSER", "PGPASSWORD", "PGHOST", "PGPORT", "PGDATABASE"} <= set(_env(container))


def test_services_select_existing_pods_and_ports() -> None:
    workloads = [d for d in _deployed() if d["kind"] in {"Deployment", "StatefulSet"}]
    for service in (d for d in _deployed() if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {service['metadata']['name']} selects no pods"
        ports = {p["name"] for _, c in _containers(targets[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{service['metadata']['name']}: {port}"
    for statefulset in (w for w in workloads if w["kind"] == "StatefulSet"):
        (governing,) = [
            s
            for s in _deployed()
            if s["kind"] == "Service"
            and s["metadata"]["name"] == statefulset["spec"]["serviceName"]
        ]
        assert governing["spec"]["clusterIP"] == "None", "a StatefulSet's Service is headless"


def test_example_build_job_uses_the_cluster_and_a_valid_config() -> None:
    docs = _load_yaml(K8S / "examples" / "build-job.example.yaml")
    (container,) = _one("Job", docs)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == _dask_container("worker")["image"], "client and workers must match"
    args = container["args"]
    assert args[:2] == ["icecube-cloud", "build"]
    cluster = _one("DaskCluster")["metadata"]["name"]
    assert _flag(args, "--scheduler") == f"tcp://{cluster}-scheduler.icecube.svc:8786"
    assert _flag(args, "--stac-url").startswith("http://stac-api.icecube.svc:8080")
    prefix = re.search(
        r'variable "cube_prefix" \{[^}]*default\s*=\s*"([^"]+)"', TERRAFORM.read_text()
    )
    assert prefix and _flag(args, "--out").split("/", 3)[3].startswith(prefix.group(1))
    parse_config(json.loads(_one("ConfigMap", docs)["data"]["cfg.json"]))


def test_builtin_kinds_match_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = 0
    for path, doc in _manifests():
        group = doc["apiVersion"].rsplit("/", 1)[0] if "/" in doc["apiVersion"] else ""
        if "." in group:
            continue  # custom resources (DaskCluster, ...): the operator's CRDs validate them
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{path.name} {doc['kind']}: {err.message} at {list(err.path)}")
        checked += 1
    # The operator's CRD accepts any pod spec: check the DaskCluster's as plain Pods and Service.
    cluster = _one("DaskCluster")
    for role, pod in _pod_specs(cluster):
        _validate(kubernetes_validate, {"kind": "Pod", "spec": pod}, role)
    service = {"kind": "Service", "spec": cluster["spec"]["scheduler"]["service"]}
    _validate(kubernetes_validate, service, "DaskCluster scheduler service")
    assert checked >= 8


def _validate(kubernetes_validate: Any, partial: Doc, what: str) -> None:
    doc = {"apiVersion": "v1", "metadata": {"name": "check"}, **partial}
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        pytest.fail(f"{what}: {err.message} at {list(err.path)}")


# --- Dockerfile -----------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _base_images() -> list[str]:
    args: dict[str, str] = {}
    for instr, arguments in _instructions():
        if instr == "ARG" and "=" in arguments:
            name, default = arguments.split("=", 1)
            args[name] = default
    images = []
    for instr, arguments in _instructions():
        if instr == "FROM":
            image = arguments.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[str(m.group(1))], image))
    return images


def test_dockerfile_pins_the_python_that_pyproject_requires() -> None:
    images = _base_images()
    assert images
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    for image in images:
        match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image)
        assert match, f"{image}: pin python:X.Y.Z-slim"
        assert match.group(1) in requires, f"{image} does not satisfy requires-python {requires}"


def test_dockerfile_runs_as_non_root_without_entrypoint() -> None:
    instructions = _instructions()
    last_from = max(i for i, (instr, _) in enumerate(instructions) if instr == "FROM")
    users = [a for instr, a in instructions[last_from:] if instr == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    # The operator's `dask scheduler` / `dask worker` args must run as the command.
    assert "ENTRYPOINT" not in {instr for instr, _ in instructions}


def test_dockerfile_installs_the_project_and_copies_only_what_dockerignore_allows() -> None:
    instructions = _instructions()
    assert any(
        instr == "RUN" and re.search(r"pip install (/src|\.)(\s|$)", a) for instr, a in instructions
    )
    allowed = {
        line[1:].strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert "*" in DOCKERIGNORE.read_text().splitlines(), "allow-list: ignore everything else"
    copied = [
        source.rstrip("/")
        for instr, a in instructions
        if instr == "COPY" and "--from" not in a
        for source in a.split()[:-1]
    ]
    assert {"pyproject.toml", "icecube_cloud"} <= set(copied)
    assert set(copied) <= allowed, "a COPY source the build context would not contain"


def test_dockerfile_bakes_in_no_secrets() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"AWS_SECRET|AWS_ACCESS_KEY|AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(PASSWORD|TOKEN|SECRET)\w*\s*=\s*\S", text, re.IGNORECASE)
    for instr, arguments in _instructions():
        if instr in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY", arguments, re.IGNORECASE), arguments


# --- Terraform ------------------------------------------------------------------------------------


def test_terraform_bucket_and_least_privilege_policy() -> None:
    text = TERRAFORM.read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert code.count("{") == code.count("}") and code.count("[") == code.count("]")
    for resource in (
        "aws_s3_bucket",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_lifecycle_configuration",
        "aws_iam_policy",
    ):
        assert re.search(rf'resource "{resource}" "\w+"', code), resource
    assert re.search(r'status\s*=\s*"Disabled"', code), "versioning off"
    assert "abort_incomplete_multipart_upload" in code
    assert re.search(r"prefix\s*=\s*var\.tmp_prefix", code), "temp prefix expires"
    assert '"s3:*"' not in code and '"*"' not in code, "no wildcard actions or resources"
    for resources in re.findall(r"resources\s*=\s*\[([^\]]*)\]", code):
        assert "aws_s3_bucket.icecube.arn" in resources, resources
    for prefix in ("source_prefix", "cube_prefix", "tmp_prefix"):
        assert re.search(rf'variable "{prefix}"', code), prefix
