"""The Kubernetes manifests and the image definition: every document is a
valid Kubernetes object (checked offline against the API's schemas with
kubernetes-validate), and every command they run is one shoal accepts.
No Kubernetes cluster or container build runs here."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES = "1.30.0"


def documents():
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def containers():
    for name, doc in documents():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            yield name, doc["metadata"]["name"], c, spec


def test_there_are_manifests_with_and_without_tls():
    assert {p.name for p in MANIFESTS} == {"shoal.yaml", "shoal-tls.yaml"}


@pytest.mark.parametrize("name, doc", list(documents()), ids=lambda x: str(x)[:40])
def test_every_document_is_a_valid_kubernetes_object(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def flags(command: str) -> set[str]:
    """The options ``shoal COMMAND --help`` lists."""
    out = subprocess.run(
        [sys.executable, "-m", "shoal", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {w.strip(",[]") for w in out.split() if w.startswith("--")}


@pytest.mark.parametrize("manifest, deployment, container, spec", list(containers()))
def test_every_container_runs_a_command_shoal_accepts(manifest, deployment, container, spec):
    command, *args = container["args"]
    assert command in ("scheduler", "worker")
    unknown = {a for a in args if a.startswith("--")} - flags(command)
    assert not unknown, f"{manifest}/{deployment}: shoal {command} has no {unknown}"
    env = {e["name"]: e for e in container.get("env", [])}
    # The token comes from the Secret as a mounted file: never on the
    # command line, never in the environment (/proc/PID/environ keeps it).
    assert "SHOAL_TOKEN" not in env and "--token" not in args
    token_file = args[args.index("--token-file") + 1]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    (mount,) = [m for m in container["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")]
    assert volumes[mount["name"]]["secret"]["secretName"] == "shoal-token"
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    for a in args:
        if a.startswith("/etc/shoal/"):
            assert any(a.startswith(m) for m in mounts), f"{a} is not mounted"
    if command == "worker":
        scheme = "tls://" if "--tls-ca-file" in args else "tcp://"
        assert args[0] == f"{scheme}shoal-scheduler:8786"


def test_the_image_copies_what_exists_and_runs_shoal():
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _ = line.split()[1:]
            for s in sources:
                assert (ROOT / s).exists(), f"the Dockerfile copies {s}, which does not exist"
    assert 'ENTRYPOINT ["shoal"]' in text
    images = {c["image"] for _, _, c, _ in containers()}
    assert images == {"shoal:latest"}
