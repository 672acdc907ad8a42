"""Read the TrainingPipeline and ModelDeployment YAML a user would ``kubectl apply``.

Files may hold several documents (``---``); a directory means every ``*.yaml`` / ``*.yml``
in it. Objects of other kinds (a kustomization, a PersistentVolumeClaim) are skipped and
listed, TrainingRuns are refused (the runner creates them), and a document that does not
validate is an error naming the file, the object and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from perennial.api.constants import API_VERSION, MODEL_DEPLOYMENT, TRAINING_PIPELINE, TRAINING_RUN
from perennial.api.deployment import ModelDeployment
from perennial.api.pipeline import TrainingPipeline

DEFAULT_NAMESPACE = "default"


class ManifestError(ValueError):
    """A manifest cannot be used; the message names the file and what to fix."""


@dataclass
class Manifests:
    pipelines: dict[tuple[str, str], TrainingPipeline] = field(default_factory=dict)
    deployments: dict[tuple[str, str], ModelDeployment] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.pipelines and not self.deployments


def manifest_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named by ``paths`` (directories expanded, sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not found:
                raise ManifestError(f"{path}: the directory holds no .yaml or .yml file")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ManifestError(f"{path}: no such file or directory")
    return files


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    more = f" (and {len(exc.errors()) - 5} more)" if len(exc.errors()) > 5 else ""
    return "; ".join(parts) + more


def _documents(path: Path) -> list[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from exc
    try:
        return [(i, doc) for i, doc in enumerate(yaml.safe_load_all(text), 1) if doc is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc


def load_manifests(paths: Sequence[Path]) -> Manifests:
    """Every TrainingPipeline and ModelDeployment in ``paths``."""
    out = Manifests()
    for path in manifest_files(paths):
        for index, doc in _documents(path):
            where = f"{path} (document {index})"
            if not isinstance(doc, dict):
                raise ManifestError(f"{where}: expected a YAML mapping, got {type(doc).__name__}")
            kind = doc.get("kind")
            api_version = doc.get("apiVersion")
            name = (doc.get("metadata") or {}).get("name") or "?"
            if kind not in (TRAINING_PIPELINE, MODEL_DEPLOYMENT, TRAINING_RUN):
                out.skipped.append(f"{path}: {kind or 'no kind'}/{name}")
                continue
            if api_version != API_VERSION:
                raise ManifestError(
                    f"{where}: {kind} {name}: apiVersion must be {API_VERSION}, got {api_version!r}"
                )
            if kind == TRAINING_RUN:
                raise ManifestError(
                    f"{where}: TrainingRun {name}: the local runner creates runs itself; "
                    "remove it (start a run with the perennial.dev/retrain annotation)"
                )
            if not (doc.get("metadata") or {}).get("name"):
                raise ManifestError(f"{where}: {kind} needs metadata.name")
            body = {k: v for k, v in doc.items() if k != "status"}  # status is the runner's
            try:
                obj: TrainingPipeline | ModelDeployment = (
                    TrainingPipeline.model_validate(body)
                    if kind == TRAINING_PIPELINE
                    else ModelDeployment.model_validate(body)
                )
            except ValidationError as exc:
                raise ManifestError(f"{where}: {kind} {name}: {_explain(exc)}") from exc
            namespace = obj.metadata.namespace or DEFAULT_NAMESPACE
            obj.metadata.namespace = namespace
            key = (namespace, name)
            table: dict[tuple[str, str], Any] = (
                out.pipelines if kind == TRAINING_PIPELINE else out.deployments
            )
            if key in table:
                raise ManifestError(
                    f"{where}: {kind} {namespace}/{name} is defined twice; keep one"
                )
            table[key] = obj
    if out.empty:
        listed = ", ".join(str(p) for p in paths)
        raise ManifestError(
            f"no TrainingPipeline or ModelDeployment found in {listed}"
            + (f" (skipped: {'; '.join(out.skipped)})" if out.skipped else "")
        )
    return out
