"""The teacher's soft targets (issue #23): columns in the data's class order, hard labels after
them, -1 for unlabelled texts, a cache that skips the second labelling, clear errors."""

import json

import numpy as np
import pytest

from ulmfit.errors import UlmfitError
from ulmfit.phases.config import DistilConfig
from ulmfit.phases.distil import teacher_targets, transfer_texts


class FakeTeacher:
    classes = ["pos", "neg"]  # not the data's order
    multi_label = False

    def __init__(self):
        self.calls = 0

    def predict_proba(self, texts, bs=64):
        self.calls += 1
        p = np.array([[0.9, 0.1] if "good" in t else [0.2, 0.8] for t in texts], np.float32)
        return p


def _teacher_folder(tmp_path):
    d = tmp_path / "teacher"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"kind": "classifier", "sha256": {"w": "abc"}}))
    return d


def test_rows_hold_the_teachers_probabilities_in_data_order_then_the_hard_label(tmp_path):
    teacher = FakeTeacher()
    folder = _teacher_folder(tmp_path)
    cfg = DistilConfig(teacher=str(folder))
    soft = teacher_targets(cfg, lambda f: teacher, ["neg", "pos"], ["a good film", "a dull film"], np.array([1, 0]),
                           ["good fun", "so dull"], quiet=True, cache_dir=tmp_path / "cache")
    assert soft.texts == ["a good film", "a dull film", "good fun", "so dull"]
    np.testing.assert_allclose(soft.rows, [[0.1, 0.9, 1], [0.8, 0.2, 0], [0.1, 0.9, -1], [0.8, 0.2, -1]], rtol=1e-6)
    assert soft.info == {"distil_texts": 2, "teacher_train_accuracy": 1.0}
    again = teacher_targets(cfg, lambda f: teacher, ["neg", "pos"], ["a good film", "a dull film"], np.array([1, 0]),
                            ["good fun", "so dull"], quiet=True, cache_dir=tmp_path / "cache")
    assert teacher.calls == 1  # the second student read the cache
    np.testing.assert_array_equal(again.rows, soft.rows)
    other = teacher_targets(cfg, lambda f: teacher, ["neg", "pos"], ["a good film"], np.array([1]), ["new text"],
                            quiet=True, cache_dir=tmp_path / "cache")
    assert teacher.calls == 2 and len(other.rows) == 2  # other texts: labelled again


def test_transfer_texts_are_a_seeded_sample(tmp_path):
    f = tmp_path / "u.txt"
    f.write_text("\n".join(f"text {i}" for i in range(50)) + "\n\n")
    cfg = DistilConfig(teacher="t", texts=str(f), max_texts=10)
    a, b = transfer_texts(cfg, ["text"], seed=3), transfer_texts(cfg, ["text"], seed=3)
    assert a == b and len(a) == 10 and a != transfer_texts(cfg, ["text"], seed=4)
    assert len(transfer_texts(DistilConfig(teacher="t", texts=str(f)), ["text"], 0)) == 50
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(UlmfitError, match="classifier.distil.texts .* no text in it"):
        transfer_texts(DistilConfig(teacher="t", texts=str(tmp_path / "empty.txt")), ["text"], 0)


def test_teacher_with_other_labels_or_none_loaded_is_refused(tmp_path):
    cfg = DistilConfig(teacher=str(_teacher_folder(tmp_path)))
    with pytest.raises(UlmfitError, match="a teacher must know exactly the data's labels"):
        teacher_targets(cfg, lambda f: FakeTeacher(), ["a", "b", "c"], ["x"], np.array([0]), [], quiet=True)
    with pytest.raises(UlmfitError, match="run the phase through ulmfit"):
        teacher_targets(cfg, None, ["neg", "pos"], ["x"], np.array([0]), [], quiet=True)


def test_augmented_copies_follow_the_transfer_sample(tmp_path):
    f = tmp_path / "u.txt"
    f.write_text("\n".join(f"text {i}" for i in range(50)))
    labelled = ["a good film with a fine cast", "a dull film with a weak plot"]
    cfg = DistilConfig(teacher="t", texts=str(f), max_texts=10, augment=3)
    extra = transfer_texts(cfg, ["text"], 3, labelled)
    assert extra[:10] == transfer_texts(DistilConfig(teacher="t", texts=str(f), max_texts=10), ["text"], 3)
    copies = extra[10:]
    assert 0 < len(copies) <= 6 and not set(copies) & set(labelled)
    assert transfer_texts(DistilConfig(teacher="t", augment=2), ["text"], 0, labelled)  # copies without a file
