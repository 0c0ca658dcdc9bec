"""Loss, optimizer, learning-rate schedule and gradient clipping, from first principles.

- `cross_entropy`: stable log-sum-exp (max subtracted), mean over every batch dimension.
- `AdamW`: Loshchilov and Hutter, "Decoupled Weight Decay Regularization", algorithm 2, step for
  step the same arithmetic as `torch.optim.AdamW`:
      theta <- theta - lr * wd * theta_{t-1}                      (decoupled decay, on the old theta)
      m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
      theta <- theta - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
  i.e. the bias-corrected step size alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t) applied to
  m / (sqrt(v) + eps sqrt(1 - b2^t)). NOTE: the decay uses theta_{t-1} as in the paper (applying it
  after the Adam step instead changes the result by O(lr^2 wd) per step), and eps is added to the
  bias-corrected sqrt(v_hat) as in the paper (the "efficient" form m / (sqrt(v) + eps) differs by a
  factor sqrt(1 - b2^t) on eps only).
  A multi-tensor path (`torch._foreach_*`: one call per op for all parameters, one kernel launch
  per op on GPU) is the default; it gives the same numbers as the per-parameter loop.
- `lr_cosine_schedule`: linear warm-up, cosine decay, then a floor.
- `clip_gradients`: one global L2 norm over all gradients; never syncs with the host.

    optimizer = AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    loss = cross_entropy(model(x), y); loss.backward()
    clip_gradients(model.parameters(), 1.0); optimizer.step(); optimizer.zero_grad(set_to_none=True)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import torch
from torch import Tensor


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of `targets` under softmax(`logits`).

    Args:
        logits: (..., vocab) unnormalised scores; bf16/fp16 are computed in float32.
        targets: (...) integer class ids in [0, vocab).
    Returns:
        scalar (float32 or better): mean over all leading dimensions of logsumexp(logits) - logits[target].
    Example: cross_entropy(tensor([[0., 0.]]), tensor([1])) -> log 2.

    The gradient is written out, (softmax(logits) - onehot(target)) / N, so autograd keeps only the
    logits and one log-sum-exp per row instead of a float32 copy of the exponentials (the logits
    are the largest activation of a language model).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match: "
                         "expected logits (..., vocab) and targets (...)")  # fmt: skip
    return _CrossEntropy.apply(logits, targets.long())


_CE_CHUNK = 1 << 18  # elements of logits per chunk of rows (1 MiB in float32)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # (..., vocab)
        rows = x.reshape(-1, x.shape[-1])  # (n, vocab)
        lse = x.new_empty(rows.shape[0])
        # On the CPU, a few rows at a time: the exponentials of a chunk stay in cache, where one
        # (n, vocab) temporary would be freshly mapped (page-faulted) memory every step.
        cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
        step = max(1, _CE_CHUNK // x.shape[-1]) if cpu else rows.shape[0]
        for r0 in range(0, rows.shape[0], step):
            chunk = rows[r0 : r0 + step]
            m = chunk.amax(dim=-1, keepdim=True)  # (rows, 1)
            torch.add(m.squeeze(-1), torch.sub(chunk, m).exp_().sum(dim=-1).log_(), out=lse[r0 : r0 + step])
        lse = lse.view(x.shape[:-1])  # (...,)
        target_logit = x.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...,)
        ctx.save_for_backward(logits, targets, lse)
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        logits, targets, lse = ctx.saved_tensors
        x = logits.to(lse.dtype)  # (..., vocab)
        minus_one = torch.full_like(lse.unsqueeze(-1), -1.0)  # (..., 1)
        scale = grad_output / lse.numel()
        if torch.is_grad_enabled():  # create_graph=True: out of place and from x alone, so it differentiates
            e = torch.exp(x - x.amax(dim=-1, keepdim=True).detach())
            grad = (e / e.sum(dim=-1, keepdim=True)).scatter_add(-1, targets.unsqueeze(-1), minus_one) * scale
        else:  # the usual case: in place, one (..., vocab) buffer
            grad = (x - lse.unsqueeze(-1)).exp_()  # softmax, (..., vocab)
            grad.scatter_add_(-1, targets.unsqueeze(-1), minus_one).mul_(scale)  # (softmax - onehot) / N
        return grad.to(logits.dtype), None


class AdamW(torch.optim.Optimizer):
    """AdamW (Loshchilov and Hutter, algorithm 2); see the module docstring for the update.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate (set `group["lr"]` each step for a schedule).
        betas: (beta1, beta2) moment decay rates.
        eps: added to sqrt(v_hat).
        weight_decay: decoupled decay coefficient (multiplied by lr).
        foreach: True (default) = multi-tensor `torch._foreach_*` ops, False = the plain
            per-parameter loop. Same numbers; the multi-tensor path saves kernel launches on GPU
            and is on par with the loop on CPU (benches/bench_lm_components.py).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        foreach: bool = True,
    ):
        if not lr >= 0.0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # 1. Collect parameters with gradients; create state lazily (step 0, zero moments).
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            # 2. Update, per parameter or as multi-tensor batches.
            update = _adamw_foreach if group["foreach"] else _adamw_loop
            update(params, grads, exp_avgs, exp_avg_sqs, steps, group)
        return loss


def _adamw_loop(params, grads, exp_avgs, exp_avg_sqs, steps, group) -> None:
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        if wd != 0:
            p.mul_(1 - lr * wd)  # decoupled decay of theta_{t-1}
        m.lerp_(g, 1 - beta1)  # m = b1 m + (1 - b1) g
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v = b2 v + (1 - b2) g^2
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = math.sqrt(1 - beta2**t)
        denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)  # sqrt(v_hat) + eps
        p.addcdiv_(m, denom, value=-lr / bias_correction1)


def _adamw_foreach(params, grads, exp_avgs, exp_avg_sqs, steps, group) -> None:
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    # foreach ops need one device and dtype per list, and the bias corrections one step count.
    buckets = defaultdict(list)
    for i, p in enumerate(params):
        buckets[(p.device, p.dtype, steps[i])].append(i)
    for (_, _, t), idx in buckets.items():
        p, g = [params[i] for i in idx], [grads[i] for i in idx]
        m, v = [exp_avgs[i] for i in idx], [exp_avg_sqs[i] for i in idx]
        if wd != 0:
            torch._foreach_mul_(p, 1 - lr * wd)
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = math.sqrt(1 - beta2**t)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(p, m, denom, value=-lr / bias_correction1)


def lr_cosine_schedule(t: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """Learning rate at iteration t.

    1. warm-up, t < warmup_iters: t / warmup_iters * max_lr
    2. cosine, warmup_iters <= t <= cosine_cycle_iters:
       min_lr + (1 + cos(pi (t - warmup_iters) / (cosine_cycle_iters - warmup_iters))) / 2 * (max_lr - min_lr)
    3. floor, t > cosine_cycle_iters: min_lr

    Example: lr_cosine_schedule(15, 1.0, 0.1, 10, 20) -> 0.55.
    """
    if warmup_iters < 0 or cosine_cycle_iters < warmup_iters:
        raise ValueError(
            f"need 0 <= warmup_iters <= cosine_cycle_iters, got warmup_iters={warmup_iters}, cosine_cycle_iters={cosine_cycle_iters}"
        )
    if t < warmup_iters:
        return t / warmup_iters * max_lr
    if t <= cosine_cycle_iters:
        if cosine_cycle_iters == warmup_iters:
            return max_lr
        progress = (t - warmup_iters) / (cosine_cycle_iters - warmup_iters)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
    return min_lr


def clip_gradients(parameters: Iterable[Tensor] | Tensor, max_l2_norm: float, eps: float = 1e-6) -> Tensor:
    """Scale all gradients in place by max_l2_norm / (norm + eps) when their global L2 norm exceeds
    max_l2_norm; parameters without a gradient are skipped.

    Returns:
        the total norm before clipping (a 0-dim tensor, float32 or better, on the gradients' device).
        NOTE: reading it with .item() syncs with the device; the clipping itself never does.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    # One norm per device/dtype bucket (multi-tensor kernels), then the norm of those norms.
    buckets = defaultdict(list)
    for g in grads:
        buckets[(g.device, g.dtype)].append(g)
    norms = []
    for (_, dtype), bucket in buckets.items():
        acc = torch.promote_types(dtype, torch.float32)  # bf16 squares summed in bf16 would drift
        bucket_norms = torch._foreach_norm([g.to(acc) for g in bucket] if acc != dtype else bucket)
        norms.extend(n.to(device=device, dtype=acc) for n in bucket_norms)
    acc_dtype = torch.float64 if any(n.dtype == torch.float64 for n in norms) else torch.float32
    total = torch.stack([n.to(acc_dtype) for n in norms]).pow(2).sum().sqrt()  # ()
    scale = torch.where(total > max_l2_norm, max_l2_norm / (total + eps), 1.0)  # () ; no host sync
    for (dev, dtype), bucket in buckets.items():
        torch._foreach_mul_(bucket, scale.to(device=dev, dtype=dtype))
    return total
