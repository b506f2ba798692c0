"""Run folders: the manifest every phase writes, and the one function that says what a folder holds.

Every phase writes ``run.json`` next to its outputs::

    {"kind": "lm" | "classifier" | "ensemble", "backend": "awd_lstm" | "transformers" | "vision",
     "phase": "pretrain" | "finetune_lm" | "classifier" | "ensemble", "tokenizer": "tokenizer.json",
     "parent": "<the LM or encoder folder it started from, or null>", "ulmfit_version": "..."}

:func:`read_run` answers "what is this folder?" for every reader (predict, evaluate, export,
compare, phase 2's and phase 3's inputs). Folders written before manifests existed, exported Hub
folders and plain transformers folders have none; for them (and only here) the answer is read
from the files the folder holds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ulmfit import __version__
from ulmfit.core.checkpoint import atomic_write_text, latest_checkpoint
from ulmfit.errors import UlmfitError

MANIFEST = "run.json"
KINDS = ("lm", "classifier", "ensemble")
PHASE_DIRS = ("classifier", "finetune_lm", "pretrain")  # a recipe run's phases, the model-holding first


@dataclass
class RunInfo:
    path: Path                  # the folder itself
    kind: str                   # lm | classifier | ensemble
    backend: str                # awd_lstm | transformers | vision
    phase: str | None = None    # pretrain | finetune_lm | classifier | ensemble | export
    parent: str | None = None   # the LM / encoder folder this run started from
    tokenizer: str | None = None
    exported: bool = False      # an `ulmfit export` (Hub) folder
    manifest: bool = False      # read from run.json (False: recognised from its files)
    sha256: dict = field(default_factory=dict)  # file (relative) -> sha256 when it was written

    def verify(self) -> "RunInfo":
        """Refuse weight or tokenizer files that changed since the run wrote them (a damaged copy,
        a hand-edited or swapped vocabulary); folders without recorded hashes pass."""
        for name, digest in self.sha256.items():
            f = self.path / name
            if not f.is_file():
                raise UlmfitError(f"{f} is missing: {self.path / MANIFEST} lists it")
            if sha256(f) != digest:
                raise UlmfitError(f"{f} changed since it was written (its sha256 differs from {MANIFEST}); "
                                  "re-run the phase, or pass --no-verify to load a file you edited on purpose")
        return self

    def config(self) -> dict:
        """The run's resolved config.yaml ({} when it has none)."""
        return _read_yaml(self.path / "config.yaml")

    def metrics(self) -> dict:
        return _read_json(self.path / "metrics.json")


def _guarded_files(d: Path) -> list[Path]:
    """The files whose sha256 a manifest records: the weights and the tokenizer (not checkpoints)."""
    found = [*d.rglob("*.safetensors"), *d.rglob("tokenizer.json")]
    return sorted(p for p in found if not {"checkpoints", "work"} & set(p.relative_to(d).parts))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out: str | Path, kind: str, backend: str, phase: str, parent: str | None = None,
                   tokenizer: str | None = "tokenizer.json") -> Path:
    """Write ``run.json`` into ``out`` (with the sha256 of its weight and tokenizer files, checked
    when they are loaded); returns its path."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    d = Path(out)
    data = {"kind": kind, "backend": backend, "phase": phase, "tokenizer": tokenizer,
            "parent": str(parent) if parent else None, "ulmfit_version": __version__,
            "sha256": {str(p.relative_to(d)): sha256(p) for p in _guarded_files(d)}}
    path = Path(out) / MANIFEST
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def check_out_dir(path, what: str = "output folder", create: bool = True) -> Path:
    """Make sure ``path`` can hold outputs before any work starts: a folder (created if needed)
    that this process can write to; one clear line otherwise. With ``create=False`` nothing is
    created: the nearest folder that exists on the way to ``path`` must be writable (``ulmfit run``
    checks its later phases' folders so, without leaving empty ones behind while earlier phases run)."""
    out = Path(path)
    probe = out  # the folder whose writability is tried: out itself, or the nearest that exists
    if not create:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
    if probe.exists() and not probe.is_dir():
        if probe == out:
            raise UlmfitError(f"{what} {out} is an existing file; choose a folder (--out)")
        raise UlmfitError(f"{what} {out} cannot be made: {probe} is an existing file; choose a folder (--out)")
    try:
        if create:
            out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".ulmfit-write-check-"):
            pass
    except OSError as e:
        raise UlmfitError(f"cannot write to {what} {out}: {e.strerror or e}") from None
    return out


def staging_dir(out: str | Path) -> Path:
    """Where a phase writes until it finishes: ``<out>.partial`` beside the output folder."""
    out = Path(out)
    return out.parent / (out.name + ".partial")


def check_finished(out: str | Path, resume: bool, force: bool) -> None:
    """Refuse to replace a finished run in ``out`` without ``force``, and to resume one."""
    out = Path(out)
    if (out / "metrics.json").is_file():
        if resume and not force:  # with force: a forced re-run that was interrupted continues
            raise UlmfitError(f"{out} holds a finished run: there is nothing to resume (--force trains it again)")
        if not force:
            raise UlmfitError(f"{out} holds a finished run; pass --force to replace it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise UlmfitError(f"output folder {out} is an existing file; choose a folder (--out)")


def interrupted_checkpoint(out: str | Path) -> Path | None:
    """The last checkpoint an interrupted run of ``out`` left: in its staging folder, or in ``out``
    itself under several processes (which write in place); None: none."""
    return latest_checkpoint(staging_dir(out) / "checkpoints") or latest_checkpoint(Path(out) / "checkpoints")


def begin_run(out: str | Path, resume: bool, force: bool) -> Path:
    """The staging folder for a phase that will write ``out``: refuses to replace a finished run
    without ``force`` (and to resume one), starts a fresh staging folder unless resuming (saying so
    on stderr when that drops an interrupted run's checkpoint)."""
    out, stage = Path(out), staging_dir(out)
    check_finished(out, resume, force)
    if not resume:
        if (last := interrupted_checkpoint(out)) is not None:
            print(f"starting {out} over: the interrupted run's checkpoint {last.name} in {stage} is dropped "
                  "(--resume would have continued it)", file=sys.stderr, flush=True)
        shutil.rmtree(stage, ignore_errors=True)
    return check_out_dir(stage)


def finish_run(stage: Path, out: str | Path) -> None:
    """Put a finished phase's staging folder in place of ``out`` (a replaced run is removed only
    once the new one is in place) and point its config.yaml's ``out`` at the final folder."""
    out, stage = Path(out), Path(stage)
    cfg = stage / "config.yaml"
    if cfg.is_file():
        data = _read_yaml(cfg)
        if data.get("out") == str(stage):
            atomic_write_text(cfg, yaml.safe_dump({**data, "out": str(out)}, sort_keys=False))
    old = out.parent / (out.name + ".replaced")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def read_run(folder: str | Path) -> RunInfo:
    """What ``folder`` holds (a UlmfitError naming the folder when it holds no model ulmfit knows)."""
    d = Path(folder)
    if not d.is_dir():
        raise UlmfitError(f"model folder {d} does not exist")
    if (d / MANIFEST).is_file():
        m = _read_json(d / MANIFEST)
        if m.get("kind") not in KINDS or not m.get("backend"):
            raise UlmfitError(f"{d / MANIFEST} is not an ulmfit run manifest (kind and backend missing)")
        return RunInfo(d, m["kind"], m["backend"], m.get("phase"), m.get("parent"), m.get("tokenizer"),
                       manifest=True, sha256=dict(m.get("sha256") or {}))
    info = _recognise(d)
    if info is None:
        raise UlmfitError(f"{d} holds no model ulmfit knows: expected a run folder (run.json), a classifier, "
                          "a language model, an ensemble or an `ulmfit export` folder")
    return info


def _recognise(d: Path) -> RunInfo | None:
    """The kind of a folder without a manifest, from the files it holds."""
    cfg = _read_yaml(d / "config.yaml") if (d / "config.yaml").is_file() else {}
    if (d / "ensemble.json").is_file():
        return RunInfo(d, "ensemble", "awd_lstm", "ensemble")
    if (d / "classifier_config.json").is_file():
        return RunInfo(d, "classifier", "awd_lstm", "classifier", cfg.get("encoder"), "tokenizer.json")
    for cand, where in ((d, "."), (d / "model", "model")):
        if (cand / "ulmfit_head.json").is_file():
            return RunInfo(d, "classifier", "transformers", "classifier", cfg.get("encoder"), where)
    if (d / "lm_config.json").is_file():
        phase = "finetune_lm" if (d / "encoder.safetensors").is_file() or cfg.get("pretrained") else "pretrain"
        return RunInfo(d, "lm", "awd_lstm", phase, cfg.get("pretrained"), "tokenizer.json")
    hf = _read_json(d / "config.json") if (d / "config.json").is_file() else {}
    if hf.get("model_type") == "ulmfit":
        kind = "classifier" if hf.get("task") == "text-classification" else "lm"
        return RunInfo(d, kind, "awd_lstm", "export", None, "tokenizer.json", exported=True)
    if hf.get("model_type"):
        return RunInfo(d, "lm", "transformers", "finetune_lm" if cfg else None, cfg.get("pretrained"), ".")
    return None


def find_model(run_dir: str | Path) -> RunInfo:
    """The model a folder stands for: the folder itself, or in a recipe run (``ulmfit run --out``)
    its classifier, else its fine-tuned LM, else its pretrained LM."""
    d = Path(run_dir)
    if not d.is_dir():
        raise UlmfitError(f"run folder {d} does not exist")
    for cand in (d, *(d / p for p in PHASE_DIRS)):
        if cand.is_dir() and ((cand / MANIFEST).is_file() or _recognise(cand) is not None):
            return read_run(cand)
    raise UlmfitError(f"{d} holds no trained model: expected a classifier or LM folder, or a recipe run with "
                      "classifier/, finetune_lm/ or pretrain/ in it")


def lineage(folder: str | Path) -> list[RunInfo]:
    """The runs from the first phase to ``folder``, as far as their folders still exist."""
    chain, seen = [], set()
    d: Path | None = Path(folder)
    while d is not None and d.is_dir() and d.resolve() not in seen:
        seen.add(d.resolve())
        try:
            info = read_run(d)
        except UlmfitError:
            break
        chain.append(info)
        d = _parent_dir(info)
    return chain[::-1]


def _parent_dir(info: RunInfo) -> Path | None:
    if not info.parent:
        return None
    p = Path(info.parent)
    if p.is_dir():
        return p
    sibling = info.path.parent / ("finetune_lm" if info.phase == "classifier" else "pretrain")
    return sibling if sibling.is_dir() else None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UlmfitError(f"{path} is not valid JSON: {e}") from None
    return data if isinstance(data, dict) else {}


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UlmfitError(f"{path} is not valid YAML: {e}") from None
    return data if isinstance(data, dict) else {}
