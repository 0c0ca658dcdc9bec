"""Tests for lm336.sampling: filtering, greedy/seeded decoding, eos, the KV cache and bad input.

Run: pytest tests/test_sampling.py -q
"""

from __future__ import annotations

import pytest
import torch

from lm336.model import TransformerLM
from lm336.sampling import (
    generate,
    generate_ids,
    iter_generate,
    iter_generate_ids,
    sample_next,
    top_k_filter,
    top_p_filter,
)

CONTEXT = 16


class ByteTokenizer:
    """A test double with the bpe336.Tokenizer surface generate() uses: 256 byte tokens plus
    <|endoftext|> = 256. Independent of the BPE code, so these tests isolate sampling."""

    eot = "<|endoftext|>"

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for i, part in enumerate(text.split(self.eot)):
            if i:
                out.append(256)
            out.extend(part.encode("utf-8"))
        return out

    def id_to_token(self, i: int) -> bytes:
        return self.eot.encode() if i == 256 else bytes([i])

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.id_to_token(i) for i in ids).decode("utf-8", errors="replace")

    def token_to_id(self, token: str | bytes) -> int:
        token = token.decode() if isinstance(token, bytes) else token
        if token == self.eot:
            return 256
        raw = token.encode()
        if len(raw) != 1:
            raise KeyError(token)
        return raw[0]


@pytest.fixture(scope="module")
def model() -> TransformerLM:
    torch.manual_seed(0)
    m = TransformerLM(vocab_size=257, context_length=CONTEXT, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    # Sharpen the output so greedy paths are not decided by float noise between cached/uncached runs.
    with torch.no_grad():
        m.lm_head.weight.mul_(4.0)
    return m.eval()


# 1. Filters with hand-computed values ---------------------------------------------------------


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([0.1, 0.5, 0.15, 0.25])
    # 0.5 alone < 0.7; 0.5 + 0.25 = 0.75 >= 0.7 -> keep tokens 1 and 3.
    torch.testing.assert_close(top_p_filter(probs, 0.7), torch.tensor([0.0, 0.5 / 0.75, 0.0, 0.25 / 0.75]))
    # Mass exactly p is enough: 0.5 >= 0.5 keeps only token 1.
    torch.testing.assert_close(top_p_filter(probs, 0.5), torch.tensor([0.0, 1.0, 0.0, 0.0]))
    # Just above 0.5 needs the next token too.
    torch.testing.assert_close(top_p_filter(probs, 0.51), torch.tensor([0.0, 0.5 / 0.75, 0.0, 0.25 / 0.75]))
    # 0.9 needs 0.5 + 0.25 + 0.15 = 0.9.
    torch.testing.assert_close(top_p_filter(probs, 0.9), torch.tensor([0.0, 0.5, 0.15, 0.25]) / 0.9)
    # p = 1 keeps everything; a tiny p keeps the single most likely token.
    torch.testing.assert_close(top_p_filter(probs, 1.0), probs)
    torch.testing.assert_close(top_p_filter(probs, 1e-6), torch.tensor([0.0, 1.0, 0.0, 0.0]))


def test_top_p_batched_and_ties():
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
    out = top_p_filter(probs, 0.5)
    # Equal probabilities: the lower ids come first (stable), two of them reach 0.5.
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(out[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_top_k_filter():
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    inf = float("-inf")
    assert top_k_filter(logits, 2).tolist() == [inf, 3.0, 2.0, inf]
    assert top_k_filter(logits, 1).tolist() == [inf, 3.0, inf, inf]
    assert top_k_filter(logits, 10).tolist() == logits.tolist()


def test_sampling_frequencies_follow_the_filtered_distribution():
    logits = torch.log(torch.tensor([0.05, 0.45, 0.2, 0.3]))
    gen = torch.Generator().manual_seed(0)
    n = 4000
    counts = torch.zeros(4)
    for _ in range(n):
        counts[sample_next(logits, temperature=1.0, top_p=0.7, generator=gen)] += 1
    assert counts[0] == 0 and counts[2] == 0  # outside the nucleus {1, 3}
    expected = torch.tensor([0.0, 0.45, 0.0, 0.3]) / 0.75
    assert torch.allclose(counts / n, expected, atol=0.03)


def test_temperature_sharpens():
    logits = torch.tensor([0.0, 1.0])
    gen = torch.Generator().manual_seed(1)
    cold = sum(sample_next(logits, temperature=0.25, generator=gen) for _ in range(2000)) / 2000
    hot = sum(sample_next(logits, temperature=4.0, generator=gen) for _ in range(2000)) / 2000
    # p(1) = sigmoid(1/T): 0.982 at T = 0.25, 0.562 at T = 4.
    assert abs(cold - 0.982) < 0.02 and abs(hot - 0.562) < 0.04


def test_greedy_is_argmax_and_draws_no_random_numbers():
    logits = torch.tensor([0.5, 2.0, 2.0, -3.0])
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    assert sample_next(logits, temperature=0, generator=gen) == 1  # first maximum
    assert torch.equal(gen.get_state(), state)


# 2. Decoding with a model ---------------------------------------------------------------------


def _manual_greedy(model, prompt, n):
    """The oracle: full forward over the last CONTEXT tokens, argmax, n times."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-CONTEXT:]]))[0, -1]
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt) :]


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_matches_manual_full_forward_loop(model, use_cache):
    prompt = [72, 105, 32, 116, 104, 101]
    n = 30  # runs past the 16-token context, so the sliding window is exercised
    assert generate_ids(model, prompt, max_new_tokens=n, temperature=0, use_cache=use_cache) == _manual_greedy(model, prompt, n)


def test_greedy_with_and_without_cache_identical(model):
    prompt = list(b"Once upon")
    a = generate_ids(model, prompt, max_new_tokens=40, temperature=0, use_cache=True)
    b = generate_ids(model, prompt, max_new_tokens=40, temperature=0, use_cache=False)
    assert a == b and len(a) == 40


def test_seeded_runs_repeat(model):
    kw = dict(max_new_tokens=25, temperature=1.0, top_p=0.9, top_k=50)
    a = generate_ids(model, [1, 2, 3], seed=123, **kw)
    b = generate_ids(model, [1, 2, 3], seed=123, **kw)
    c = generate_ids(model, [1, 2, 3], seed=124, **kw)
    assert a == b
    assert a != c  # 25 draws from a near-uniform 257-way distribution: a collision is negligible
    assert generate_ids(model, [1, 2, 3], seed=123, use_cache=False, **kw) == a


def test_stops_at_eos_and_excludes_it(model):
    prompt = [10, 20, 30]
    free = generate_ids(model, prompt, max_new_tokens=20, temperature=0)
    eos = free[4]
    first = free.index(eos)
    stopped = generate_ids(model, prompt, max_new_tokens=20, temperature=0, eos_id=eos)
    assert stopped == free[:first] and eos not in stopped


def test_cache_costs_one_position_per_token(model):
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(args[0].shape[-1]), with_kwargs=True)
    try:
        generate_ids(model, [5] * 6, max_new_tokens=14, temperature=0, use_cache=True)
        # Prefill, then one position per token; once the cache is full every step refills the window.
        assert seen == [6] + [1] * 10 + [CONTEXT] * 3
        seen.clear()
        generate_ids(model, [5] * 6, max_new_tokens=4, temperature=0, use_cache=False)
        assert seen == [6, 7, 8, 9]
    finally:
        handle.remove()


def test_long_prompt_is_left_truncated(model):
    long_prompt = list(range(40, 40 + 3 * CONTEXT))
    a = generate_ids(model, long_prompt, max_new_tokens=8, temperature=0)
    b = generate_ids(model, long_prompt[-CONTEXT:], max_new_tokens=8, temperature=0)
    assert a == b


def test_streaming_generator_and_training_mode_restored(model):
    model.train()
    try:
        it = iter_generate_ids(model, [1, 2], max_new_tokens=5, temperature=0)
        first = next(it)
        assert not model.training  # eval while generating (no dropout exists, but the contract holds)
        rest = list(it)
        assert [first, *rest] == generate_ids(model, [1, 2], max_new_tokens=5, temperature=0)
        assert model.training
    finally:
        model.eval()


# 3. Text level --------------------------------------------------------------------------------


def test_generate_text_and_stream_agree(model):
    tok = ByteTokenizer()
    text = generate(model, tok, "Once upon a time", max_new_tokens=20, temperature=0.9, seed=7, eos_token=None)
    pieces = list(iter_generate(model, tok, "Once upon a time", max_new_tokens=20, temperature=0.9, seed=7, eos_token=None))
    assert "".join(pieces) == text
    ids = generate_ids(model, tok.encode("Once upon a time"), max_new_tokens=20, temperature=0.9, seed=7)
    assert text == tok.decode(ids)


def test_stream_holds_back_split_utf8():
    from lm336 import sampling

    # 'é' is two byte tokens: nothing is emitted after the first, the whole character after the second.
    pieces = list(sampling._decode_stream(ByteTokenizer(), iter([0xC3, 0xA9, 0x21, 0xFF])))
    assert pieces == ["é", "!", "\ufffd"]


def test_empty_prompt_starts_a_new_document(model):
    tok = ByteTokenizer()
    a = generate(model, tok, "", max_new_tokens=10, temperature=0, eos_token=None)
    b = tok.decode(generate_ids(model, [256], max_new_tokens=10, temperature=0))
    assert a == b


# 4. Bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
    ],
)
def test_bad_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_ids(model, [1, 2], **kwargs)
    with pytest.raises(ValueError, match=match):
        generate(model, ByteTokenizer(), "hi", **kwargs)


def test_bad_prompts(model):
    with pytest.raises(ValueError, match="no tokens"):
        generate_ids(model, [], max_new_tokens=3)
    with pytest.raises(ValueError, match=r"\[0, 257\)"):
        generate_ids(model, [1, 999], max_new_tokens=3)
    with pytest.raises(TypeError, match="prompt must be a str"):
        generate(model, ByteTokenizer(), [1, 2])
    with pytest.raises(ValueError, match="nosuchtoken"):
        generate(model, ByteTokenizer(), "hi", eos_token="<|nosuchtoken|>")

    class NoSpecials(ByteTokenizer):
        def token_to_id(self, token):
            if token == self.eot:
                raise KeyError(token)
            return super().token_to_id(token)

    with pytest.raises(ValueError, match="empty prompt"):
        generate(model, NoSpecials(), "")
    # Without the default eos in the vocabulary generation simply runs to max_new_tokens.
    assert len(generate_ids(model, NoSpecials().encode("hi"), max_new_tokens=5)) == 5
    assert generate(model, NoSpecials(), "hi", max_new_tokens=5, temperature=0) == generate(
        model, ByteTokenizer(), "hi", max_new_tokens=5, temperature=0, eos_token=None
    )


def test_nan_logits_are_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        sample_next(torch.tensor([0.0, float("nan"), 1.0]), temperature=1.0)
    with pytest.raises(ValueError, match="NaN"):
        sample_next(torch.tensor([0.0, float("nan"), 1.0]), temperature=0)  # argmax would pick the NaN


def test_zero_new_tokens(model):
    assert generate_ids(model, [1], max_new_tokens=0) == []
    assert generate(model, ByteTokenizer(), "x", max_new_tokens=0) == ""
