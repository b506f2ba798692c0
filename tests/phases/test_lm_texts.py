"""An LM corpus's training and validation files, each read by its own format."""

from ulmfit.phases.common import lm_texts
from ulmfit.phases.config import DataConfig


def test_text_file_for_training_and_csv_for_validation(tmp_path):
    train = tmp_path / "unlabelled.txt"
    train.write_text("first review\nsecond review\n")
    valid = tmp_path / "dev.csv"
    valid.write_text('label,text\npos,"a fine , warm film"\nneg,dull\n')
    texts, val = lm_texts(DataConfig(train=str(train), valid=str(valid), text_cols=["text"]), None)
    assert texts == ["first review", "second review"]
    assert val == ["a fine , warm film", "dull"]
    # and the other way round: a CSV to train on, a text file to validate on
    texts, val = lm_texts(DataConfig(train=str(valid), valid=str(train), text_cols=["text"]), None)
    assert texts == ["a fine , warm film", "dull"]
    assert val == ["first review", "second review"]
