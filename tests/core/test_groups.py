import pytest
import torch
from torch import nn

from ulmfit.core.groups import LayerGroups, lr_spec_to_list
from ulmfit.core.strategies import build_strategy
from ulmfit.errors import UlmfitError


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(),
        nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 8), nn.ReLU(),
        nn.Linear(8, 3),
    )


def split(m):
    return [m[0], [m[2], m[3]], m[5], m[7]]


def step(model, groups, lrs):
    opt = groups.make_optimizer(lrs, "adamw", weight_decay=0.01)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return opt


def test_lr_specs():
    assert lr_spec_to_list(1e-2, 5) == [1e-2] * 5
    got = lr_spec_to_list((1e-4, 1e-2), 5)
    assert got[0] == pytest.approx(1e-4) and got[-1] == pytest.approx(1e-2)
    for a, b in zip(got, got[1:]):
        assert b / a == pytest.approx(10 ** 0.5)
    got = lr_spec_to_list(1e-2, 5, factor=2.6)
    assert got == pytest.approx([1e-2 / 2.6**4, 1e-2 / 2.6**3, 1e-2 / 2.6**2, 1e-2 / 2.6, 1e-2])
    with pytest.raises(UlmfitError, match="3 values but the model has 5"):
        lr_spec_to_list([1, 2, 3], 5)


def test_optimizer_group_lrs_match_spec():
    m = small_model()
    g = LayerGroups(m, split(m))
    opt = g.make_optimizer(lr_spec_to_list(1e-2, 4, 2.6))
    per_group = {}
    for pg in opt.param_groups:
        per_group.setdefault(pg["layer_group"], set()).add(pg["lr"])
    assert [per_group[i].pop() for i in range(4)] == pytest.approx([1e-2 / 2.6**k for k in (3, 2, 1, 0)])


def test_freeze_to_minus_two_changes_only_top_groups():
    m = small_model()
    g = LayerGroups(m, split(m), train_norm=False)
    g.freeze_to(-2)
    before = [p.detach().clone() for p in m.parameters()]
    step(m, g, [1e-2] * 4)
    after = list(m.parameters())
    frozen = {id(p) for grp in g.params[:2] for p in grp}
    for b, p in zip(before, after):
        if id(p) in frozen:
            assert torch.equal(b, p.detach()) and not p.requires_grad
        else:
            assert not torch.equal(b, p.detach()) and p.requires_grad


def test_train_norm_keeps_batchnorm_trainable():
    m = small_model()
    g = LayerGroups(m, split(m), train_norm=True)
    g.freeze()
    assert m[3].weight.requires_grad and m[3].bias.requires_grad
    assert not m[2].weight.requires_grad and not m[0].weight.requires_grad
    before = m[3].weight.detach().clone()
    lin = m[2].weight.detach().clone()
    step(m, g, [1e-2] * 4)
    assert not torch.equal(before, m[3].weight) and torch.equal(lin, m[2].weight)


def test_unfreeze_mid_run_keeps_optimizer_state():
    m = small_model()
    g = LayerGroups(m, split(m))
    g.freeze()
    opt = g.make_optimizer([1e-2] * 4)
    for _ in range(3):
        x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    top = m[7].weight
    state_before = opt.state[top]["exp_avg"].clone()
    step_before = int(opt.state[top]["step"])
    assert m[0].weight not in opt.state
    g.unfreeze()
    nn.functional.cross_entropy(m(torch.randn(16, 4)), torch.randint(0, 3, (16,))).backward()
    opt.step()
    assert int(opt.state[top]["step"]) == step_before + 1
    assert not torch.equal(opt.state[top]["exp_avg"], state_before)
    assert int(opt.state[m[0].weight]["step"]) == 1


def test_tied_weights_belong_to_one_group():
    emb = nn.Embedding(10, 4)
    dec = nn.Linear(4, 10)
    dec.weight = emb.weight
    m = nn.ModuleDict({"emb": emb, "mid": nn.Linear(4, 4), "dec": dec})
    g = LayerGroups(m, [emb, m["mid"], dec])
    ids = [id(p) for grp in g.params for p in grp]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    assert any(p is emb.weight for p in g.params[0])
    assert not any(p is emb.weight for p in g.params[2])


def test_bad_splits():
    m = small_model()
    with pytest.raises(UlmfitError, match="misses"):
        LayerGroups(m, [m[0], m[2]])
    other = nn.Linear(2, 2)
    with pytest.raises(UlmfitError, match="not in the model"):
        LayerGroups(m, split(m) + [other])
    with pytest.raises(UlmfitError, match="no parameters of its own"):
        LayerGroups(m, split(m) + [m[0]])


def test_strategies():
    s = build_strategy("gradual", 5, epochs=[1, 1, 1, 2], lr=[2e-2, (1e-4, 1e-2), 5e-3, 1e-3])
    assert [x.trainable(5) for x in s] == [[4], [3, 4], [2, 3, 4], [0, 1, 2, 3, 4]]
    assert s[1].lr == (1e-4, 1e-2) and s[3].epochs == 2
    s = build_strategy("gradual", 5, epochs=3)
    assert [x.epochs for x in s] == [1, 1, 1, 3]
    s = build_strategy("chain_thaw", 4, epochs=1, lr=1e-3)
    assert [x.trainable(4) for x in s] == [[3], [0], [1], [2], [0, 1, 2, 3]]
    assert [x.trainable(4) for x in build_strategy("full", 4)] == [[0, 1, 2, 3]]
    assert [x.trainable(4) for x in build_strategy("head_only", 4)] == [[3]]
    custom = build_strategy("custom", 3, stages=[{"epochs": 2, "unfreeze": 2, "lr": 0.1}])
    assert custom[0].trainable(3) == [1, 2] and custom[0].epochs == 2
    with pytest.raises(UlmfitError, match="did you mean 'gradual'"):
        build_strategy("gradul", 3)
    with pytest.raises(UlmfitError, match="did you mean 'epochs'"):
        build_strategy("custom", 3, stages=[{"epoch": 2}])


def test_adam_uses_the_fused_kernel_on_cpu_and_matches_foreach():
    """The fused CPU Adam(W) (torch >= 2.4) is what make_optimizer picks; one step gives the same
    weights as the per-tensor `foreach` implementation."""
    m1, m2 = small_model(), small_model()
    opt = LayerGroups(m1, split(m1)).make_optimizer([1e-2] * 4, "adamw", weight_decay=0.01)
    assert opt.defaults.get("fused") is True
    ref = torch.optim.AdamW(LayerGroups(m2, split(m2)).param_groups([1e-2] * 4, 0.01), betas=(0.9, 0.99), eps=1e-6,
                            foreach=True)
    x = torch.randn(16, 4)
    for m, o in ((m1, opt), (m2, ref)):
        for _ in range(3):
            m(x).square().mean().backward()
            o.step()
            o.zero_grad()
    # 1e-4: the bias before the BatchNorm has a ~0 gradient, where Adam's normalisation magnifies
    # rounding differences (every other tensor agrees to 1e-7)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-4)
