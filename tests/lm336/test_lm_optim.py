"""lm336 loss, optimizer, schedule and clipping against torch.nn.functional / torch.optim / hand values.

Run: PYTHONPATH=python python -m pytest tests/test_lm_optim.py -q
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lm336 import AdamW, clip_gradients, cross_entropy, lr_cosine_schedule

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


# -- cross_entropy ----------------------------------------------------------------------------------


def test_cross_entropy_matches_f_cross_entropy_with_batch_dims():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 11, dtype=F64) * 3
    targets = torch.randint(0, 11, (2, 3, 5))
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    assert_close(cross_entropy(logits, targets), expected, rtol=1e-12, atol=1e-12)


def test_cross_entropy_hand_values_and_huge_logits():
    assert_close(cross_entropy(torch.zeros(1, 2, dtype=F64), torch.tensor([1])), torch.tensor(math.log(2), dtype=F64))
    # Logits of 1e4: a naive exp overflows to inf even in float64 (exp(1e4)).
    logits = torch.tensor([[1e4, 1e4 - 2.0, -1e4], [0.0, 1e4, 0.0]], dtype=torch.float32)
    targets = torch.tensor([1, 0])
    loss = cross_entropy(logits, targets)
    expected = (2.0 + math.log1p(math.exp(-2.0)) + 1e4) / 2  # row 0: 2 + log(1 + e^-2); row 1: 1e4
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    big = torch.randn(4, 7, dtype=F64) * 1e4
    tgt = torch.randint(0, 7, (4,))
    assert_close(cross_entropy(big, tgt), F.cross_entropy(big, tgt), rtol=1e-12, atol=1e-9)


def test_cross_entropy_bf16_logits_upcast_and_gradient():
    torch.manual_seed(1)
    logits = (torch.randn(8, 32) * 4).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, 32, (8,))
    loss = cross_entropy(logits, targets)
    assert loss.dtype == torch.float32
    assert_close(loss, F.cross_entropy(logits.float(), targets), rtol=1e-6, atol=1e-6)
    (g,) = torch.autograd.grad(loss * 3, logits)  # the written-out gradient, scaled by the upstream grad
    assert g.dtype == torch.bfloat16
    logits32 = logits.detach().float().requires_grad_()
    (g_ref,) = torch.autograd.grad(F.cross_entropy(logits32, targets) * 3, logits32)
    assert_close(g.float(), g_ref, rtol=2**-7, atol=1e-5)


def test_cross_entropy_gradient_matches_autograd_of_f_cross_entropy():
    torch.manual_seed(2)
    x = (torch.randn(2, 3, 9, dtype=F64) * 5).requires_grad_()
    t = torch.randint(0, 9, (2, 3))
    (g,) = torch.autograd.grad(cross_entropy(x, t), x)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(x.reshape(-1, 9), t.reshape(-1)), x)
    assert_close(g, g_ref, rtol=1e-12, atol=1e-15)
    # Finite differences, first and second order (the backward itself is differentiable).
    small = torch.randn(3, 5, dtype=F64, requires_grad=True)
    small_t = torch.randint(0, 5, (3,))
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, small_t), (small,))
    assert torch.autograd.gradgradcheck(lambda z: cross_entropy(z, small_t), (small,))


def test_cross_entropy_shape_mismatch():
    with pytest.raises(ValueError, match="do not match"):
        cross_entropy(torch.zeros(4, 10), torch.zeros(5, dtype=torch.long))


# -- AdamW ----------------------------------------------------------------------------------------


def _problem(seed=0):
    torch.manual_seed(seed)
    return [torch.randn(6, 4, dtype=F64), torch.randn(9, dtype=F64), torch.randn(3, 3, 2, dtype=F64)]


def _loss(params, step):
    # Non-convex, step-dependent, so moments change sign and size over the run.
    a, b, c = params
    return (a.sin() * (1 + step % 3)).sum() + (b**2).sum() * 0.5 + (c**3).sum() * 0.1 + (a[:3, :3] @ c[:, :, 0]).sum()


def _run(make_optimizer, steps=300, schedule=False, seed=0):
    params = [p.clone().requires_grad_() for p in _problem(seed)]
    groups = [
        {"params": params[:2]},
        {"params": params[2:], "lr": 3e-3, "weight_decay": 0.3},  # a second group with its own settings
    ]
    opt = make_optimizer(groups)
    for step in range(steps):
        if schedule:
            for group in opt.param_groups:
                group["lr"] = lr_cosine_schedule(step, 2e-2, 1e-3, 20, 250)
        opt.zero_grad(set_to_none=True)
        _loss(params, step).backward()
        opt.step()
    return params, opt


@pytest.mark.parametrize("schedule", [False, True])
def test_adamw_matches_torch_optim_adamw(schedule):
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours, _ = _run(lambda g: AdamW(g, **kwargs, foreach=False), schedule=schedule)
    theirs, _ = _run(lambda g: torch.optim.AdamW(g, **kwargs, foreach=False), schedule=schedule)
    start = _problem()
    for a, b, s in zip(ours, theirs, start):
        assert (a - s).abs().max() > 0.1  # the run really moved the parameters
        assert_close(a, b, rtol=1e-13, atol=1e-14)


def test_adamw_weight_decay_is_decoupled_and_applied():
    # Zero gradient: m = v = 0, so the only change is theta *= (1 - lr * wd) each step.
    p = torch.ones(3, dtype=F64, requires_grad=True)
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    for _ in range(4):
        p.grad = torch.zeros_like(p)
        opt.step()
    assert_close(p.detach(), torch.full((3,), 0.95**4, dtype=F64), rtol=1e-15, atol=0)


def test_adamw_first_step_hand_value():
    # Step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps) = lr * sign(g) (nearly).
    p = torch.tensor([1.0, -2.0], dtype=F64, requires_grad=True)
    opt = AdamW([p], lr=0.01, weight_decay=0.0, eps=1e-8)
    p.grad = torch.tensor([4.0, -0.5], dtype=F64)
    opt.step()
    expected = torch.tensor([1.0 - 0.01 * 4 / (4 + 1e-8), -2.0 + 0.01 * 0.5 / (0.5 + 1e-8)], dtype=F64)
    assert_close(p.detach(), expected, rtol=1e-15, atol=0)


def test_adamw_foreach_equals_loop():
    kwargs = dict(lr=1e-2, weight_decay=0.05)
    loop, _ = _run(lambda g: AdamW(g, **kwargs, foreach=False), steps=100, schedule=True)
    multi, _ = _run(lambda g: AdamW(g, **kwargs, foreach=True), steps=100, schedule=True)
    for a, b in zip(loop, multi):
        assert_close(a, b, rtol=1e-14, atol=1e-15)


def test_adamw_state_dict_round_trip_continues_identically():
    kwargs = dict(lr=1e-2, weight_decay=0.1)
    full, _ = _run(lambda g: AdamW(g, **kwargs), steps=40)
    half, opt = _run(lambda g: AdamW(g, **kwargs), steps=20)
    state = opt.state_dict()
    params = [p.detach().clone().requires_grad_() for p in half]
    opt2 = AdamW([{"params": params[:2]}, {"params": params[2:], "lr": 3e-3, "weight_decay": 0.3}], **kwargs)
    opt2.load_state_dict(state)
    for step in range(20, 40):
        opt2.zero_grad()
        _loss(params, step).backward()
        opt2.step()
    for a, b in zip(full, params):
        assert torch.equal(a, b)


def test_adamw_skips_params_without_grad_and_validates():
    a = torch.zeros(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    opt = AdamW([a, b], lr=0.1, weight_decay=0.1)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and b not in opt.state
    assert opt.state[a]["step"] == 1
    for bad in (dict(lr=-1.0), dict(betas=(1.0, 0.9)), dict(eps=-1e-8), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError):
            AdamW([a], **bad)


# -- lr_cosine_schedule -----------------------------------------------------------------------------


def test_lr_cosine_schedule_boundaries_by_hand():
    args = dict(max_lr=1.0, min_lr=0.1, warmup_iters=10, cosine_cycle_iters=20)
    assert lr_cosine_schedule(0, **args) == 0.0
    assert lr_cosine_schedule(5, **args) == pytest.approx(0.5)
    assert lr_cosine_schedule(9, **args) == pytest.approx(0.9)
    assert lr_cosine_schedule(10, **args) == pytest.approx(1.0)  # end of warm-up = max
    assert lr_cosine_schedule(15, **args) == pytest.approx(0.55)  # half way: (max + min) / 2
    assert lr_cosine_schedule(12, **args) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.2)) * 0.9)
    assert lr_cosine_schedule(20, **args) == pytest.approx(0.1)  # end of the cycle = min
    assert lr_cosine_schedule(21, **args) == 0.1
    assert lr_cosine_schedule(10_000, **args) == 0.1
    # No warm-up.
    assert lr_cosine_schedule(0, 1.0, 0.0, 0, 4) == 1.0
    assert lr_cosine_schedule(2, 1.0, 0.0, 0, 4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="warmup_iters"):
        lr_cosine_schedule(0, 1.0, 0.1, 10, 5)


# -- clip_gradients ---------------------------------------------------------------------------------


def _grads(scale, seed=0):
    torch.manual_seed(seed)
    params = [torch.randn(5, 4, dtype=F64, requires_grad=True), torch.randn(7, dtype=F64, requires_grad=True)]
    frozen = torch.randn(3, dtype=F64, requires_grad=True)  # no grad: skipped
    for p in params:
        p.grad = torch.randn_like(p) * scale
    return params + [frozen]


@pytest.mark.parametrize("scale", [0.01, 10.0])
def test_clip_gradients_matches_torch_on_both_sides_of_the_threshold(scale):
    ours, theirs = _grads(scale), _grads(scale)
    before = [p.grad.clone() for p in ours[:2]]
    norm = clip_gradients(ours, max_l2_norm=1.0)
    ref_norm = torch.nn.utils.clip_grad_norm_([p for p in theirs if p.grad is not None], max_norm=1.0)
    expected_norm = torch.sqrt(sum((g**2).sum() for g in before))
    assert_close(norm, expected_norm, rtol=1e-14, atol=0)
    assert_close(norm, ref_norm, rtol=1e-14, atol=0)
    for a, b in zip(ours[:2], theirs[:2]):
        assert_close(a.grad, b.grad, rtol=1e-14, atol=0)
    assert ours[2].grad is None
    if scale < 1:  # below the threshold: untouched, bit for bit
        assert norm < 1.0
        assert all(torch.equal(p.grad, g) for p, g in zip(ours[:2], before))
    else:  # above: the new norm is max / (1 + 1e-6 / norm), just under the max
        assert norm > 1.0
        new_norm = torch.sqrt(sum((p.grad**2).sum() for p in ours[:2]))
        assert new_norm.item() == pytest.approx(1.0 / (1 + 1e-6 / norm.item()), rel=1e-12)


def test_clip_gradients_single_tensor_and_no_grads():
    p = torch.zeros(4, requires_grad=True)
    p.grad = torch.full((4,), 3.0)
    assert clip_gradients(p, 1.0).item() == pytest.approx(6.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-6)
    assert clip_gradients([torch.zeros(2, requires_grad=True)], 1.0).item() == 0.0
