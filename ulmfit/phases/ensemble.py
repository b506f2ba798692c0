"""``ulmfit ensemble``: classifiers over the same classes, averaged (a forward and a backward one, as
in the ULMFiT paper's bidirectional result, or students distilled from different starting points).

The ensemble folder holds ``ensemble.json`` (the member folders, relative to it) and a manifest; no
weights. ``predict`` and ``evaluate`` read it as one classifier."""

from __future__ import annotations

import shutil
from pathlib import Path

from ulmfit.core.predictions import ENSEMBLE_NAME, EnsembleClassifier
from ulmfit.errors import UlmfitError
from ulmfit.phases.backends import load_classifier
from ulmfit.phases.runs import RunInfo, check_out_dir, finish_run, read_run, staging_dir, write_manifest
from ulmfit.phases.use import evaluate

_NOT_A_CLASSIFIER = {"lm": "is a language model", "ensemble": "is an ensemble itself (list its members instead)"}


def make_ensemble(out: str | Path, members: list[str | Path], force: bool = False, test: str | None = None,
                  text_cols=None, label_col=None, verify: bool = True) -> dict:
    """Write the ensemble of the classifier folders ``members`` to ``out``. With ``test`` (a labelled
    file) it is evaluated there first and its metrics are written beside it; nothing is written when
    that fails. ``force`` replaces an ensemble already in ``out``."""
    o = Path(out)
    infos = _members(members)
    _check_out(o, infos, force)
    stage = staging_dir(o)
    shutil.rmtree(stage, ignore_errors=True)
    check_out_dir(stage, "ensemble folder")
    res = {"ensemble": str(o), "members": [str(i.path) for i in infos]}
    try:
        EnsembleClassifier.save(stage, [i.path for i in infos])
        write_manifest(stage, kind="ensemble", backend=infos[0].backend, phase="ensemble",
                       parent=str(infos[0].path.resolve()), tokenizer=None)
        if test:  # loading the ensemble (here, or in evaluate) checks that the members' classes agree
            res.update(evaluate(str(stage), test, text_cols, label_col, out=str(stage), verify=verify))
        else:
            load_classifier(stage, verify=verify)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finish_run(stage, o)
    return res


def _members(members: list[str | Path]) -> list[RunInfo]:
    if len(members) < 2:
        raise UlmfitError(f"an ensemble needs at least two classifier folders, got {len(members)}")
    infos = [read_run(m) for m in members]
    for info in infos:
        if info.kind != "classifier":
            raise UlmfitError(f"{info.path} {_NOT_A_CLASSIFIER.get(info.kind, 'is not a classifier')}: "
                              "ensemble members are classifier folders")
    if len({i.path.resolve() for i in infos}) < len(infos):
        raise UlmfitError("the same classifier folder is listed twice")
    backends = sorted({i.backend for i in infos})
    if len(backends) > 1:
        raise UlmfitError(f"ensemble members must share one backend, got {', '.join(backends)}")
    return infos


def _check_out(o: Path, infos: list[RunInfo], force: bool) -> None:
    """``o`` may be new, empty or an ensemble (replaced with ``force``), never inside a member: a
    member trained again with --force replaces its whole folder."""
    if o.exists() and not o.is_dir():
        raise UlmfitError(f"ensemble folder {o} is an existing file; choose a folder")
    where = o.resolve()
    for i in infos:
        if where == i.path.resolve() or i.path.resolve() in where.parents:
            raise UlmfitError(f"ensemble folder {o} is inside the member {i.path}; choose a folder outside it")
    if o.is_dir() and any(o.iterdir()):
        if not (o / ENSEMBLE_NAME).is_file():
            raise UlmfitError(f"{o} exists and is not an ensemble folder: choose an empty or new folder")
        if not force:
            raise UlmfitError(f"{o} already holds an ensemble: pass --force to replace it")
