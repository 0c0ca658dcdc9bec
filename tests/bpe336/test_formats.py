"""File formats: every tokenizer the trainer can produce round-trips exactly through every format we
write (directory, Hugging Face tokenizer.json, tiktoken .tiktoken, the GPT-2 pair), and the
formats that belong to other libraries give their ids there (HF `tokenizers`, transformers'
`AutoTokenizer`, `tiktoken.Encoding`). Malformed files fail with the path and line.

cd tests && python -m pytest -q bpe336/test_formats.py
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import warnings
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tokenizers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testdata import EOT, FIXTURES, needs_shared

from bpe336 import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN, Tokenizer, train_bpe, train_bpe_from_iterator
from bpe336.formats import (
    HF_CL100K_REGEX,
    TokenizerFileError,
    check_rank_consistent,
    encode_token,
    hf_pre_tokenizer,
    pattern_from_hf,
    tiktoken_sidecar_path,
)
from bpe336.pattern import PATTERNS

# cl100k as rustbpe and nanochat spell it: a custom regex to bpe336 (it differs from tiktoken's
# on whitespace that ends a text after a line break).
GPT4_SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
NBSP = "\u00a0"
ODD_SPECIALS = ["<|endoftext|>", "ĠĠ", '"', "é", " the", NBSP, "a", "Ġ", "Ċ", "\n", "  ", "<s>", "<|é|>", "💩", "the", ".", "ab", "Ã©"]
ALPHABET = "aab the ,.!?'\"\n\t  éñüßÃ©ĠĊ\u00a0\u3000αβγ中文字😀💩\u03010123456789<|>sdmtllvere-_"


@pytest.fixture(autouse=True)
def no_tiktoken_cache(monkeypatch):
    """tiktoken caches files by path in a shared temp folder; test files must be read afresh."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")


def random_text(rng: random.Random, n: int, specials: list[str] = ()) -> str:
    parts = []
    while sum(map(len, parts)) < n:
        if specials and rng.random() < 0.1:
            parts.append(rng.choice(specials))
        else:
            parts.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12))))
    return "".join(parts)


def random_tokenizer(rng: random.Random, pattern: str = "gpt2") -> Tokenizer:
    """A tokenizer as train_bpe makes them: a random small corpus of random Unicode, random odd
    special tokens (also inside the corpus), a random vocabulary size; trained and built with
    `pattern`."""
    specials = rng.sample(ODD_SPECIALS, rng.randint(0, 4))
    corpus = random_text(rng, rng.randint(20, 400), specials)
    if not any(c for c in corpus.split("\0")):
        corpus += "x"
    vocab_size = 256 + len(specials) + rng.randint(0, 80)
    try:
        vocab, merges = train_bpe_from_iterator([corpus], vocab_size, specials, pattern=pattern)
    except ValueError:  # the corpus was only special tokens
        vocab, merges = train_bpe_from_iterator([corpus + "xy"], vocab_size, specials, pattern=pattern)
    return Tokenizer(vocab, merges, specials, pattern=pattern)


def hf_cannot_hold(tok: Tokenizer) -> bool:
    """A special token whose text is the byte-level spelling of a different token (independent of
    formats.vocab_keys): Hugging Face gives an added token the id its text has in model.vocab."""
    special_ids = set(tok.special_token_ids.values())
    spelled = {encode_token(t): t for i, t in tok.vocab.items() if i not in special_ids}
    return any(s in spelled and spelled[s] != s.encode() for s in tok.special_tokens)


def assert_same(back: Tokenizer, tok: Tokenizer, texts: list[str]) -> None:
    assert back.vocab == tok.vocab
    assert back.merges == tok.merges
    assert back.special_token_ids == tok.special_token_ids
    assert back.special_tokens == tok.special_tokens
    assert back.pattern == tok.pattern
    for text in texts:
        assert back.encode(text) == tok.encode(text), text


def round_trip_everywhere(tok: Tokenizer, where: Path, texts: list[str]) -> dict[str, int]:
    """Save `tok` in every format under `where`, load each back (ours and, for their formats, HF
    tokenizers and tiktoken), compare everything. Returns how often each path ran."""
    ran = {"dir": 0, "gpt2": 0, "tokenizer.json": 0, "hf": 0, "tiktoken": 0}
    expected = [tok.encode(t) for t in texts]

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        tok.save(where / "dir")
    assert_same(Tokenizer.load(where / "dir"), tok, texts)
    ran["dir"] += 1

    tok.save_gpt2(where / "gpt2")
    assert_same(Tokenizer.load(where / "gpt2"), tok, texts)
    ran["gpt2"] += 1

    if hf_cannot_hold(tok):
        with pytest.raises(ValueError, match="spelled like the byte-level token"):
            tok.save(where / "tokenizer.json")
        assert not (where / "tokenizer.json").exists() and not (where / "dir" / "tokenizer.json").exists()
    else:
        tok.save(where / "tokenizer.json")
        assert_same(Tokenizer.load(where / "tokenizer.json"), tok, texts)
        assert (where / "dir" / "tokenizer.json").read_bytes() == (where / "tokenizer.json").read_bytes()
        ran["tokenizer.json"] += 1
        hf = tokenizers.Tokenizer.from_file(str(where / "tokenizer.json"))
        assert [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)] == expected
        ran["hf"] += 1

    tok.save(where / "t.tiktoken")
    assert_same(Tokenizer.load(where / "t.tiktoken"), tok, texts)
    side = json.loads(tiktoken_sidecar_path(where / "t.tiktoken").read_text(encoding="utf-8"))
    enc = tiktoken.Encoding(
        "test",
        pat_str=side["pattern"],
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(where / "t.tiktoken")),
        special_tokens=side["special_tokens"],
    )
    if not any(a != b and b.startswith(a) for a in tok.special_tokens for b in tok.special_tokens):
        # (tiktoken matches specials with a regex alternation in hash order, so where one special
        # is a prefix of another it picks either; we and HF take the longest.)
        assert [enc.encode(t, allowed_special="all") for t in texts] == expected
        ran["tiktoken"] += 1
    return ran


# ---------------------------------------------------------------------------------------------
# Every tokenizer the trainer can produce, through every format
# ---------------------------------------------------------------------------------------------


def many_round_trips(where: Path, count: int, seed: int, pattern: str = "gpt2") -> None:
    rng = random.Random(seed)
    totals: dict[str, int] = {}
    for i in range(count):
        tok = random_tokenizer(rng, pattern)
        assert tok.pattern == PATTERNS.get(pattern, pattern)
        texts = [random_text(rng, rng.randint(0, 60), tok.special_tokens) for _ in range(4)]
        d = where / str(i)
        d.mkdir()
        for k, v in round_trip_everywhere(tok, d, texts).items():
            totals[k] = totals.get(k, 0) + v
        shutil.rmtree(d)
    assert totals["dir"] == totals["gpt2"] == count
    assert 0.8 * count < totals["tiktoken"] <= count
    assert 0.5 * count < totals["hf"] < count  # both branches ran: HF-representable and not


def test_300_random_trained_tokenizers_round_trip_through_every_format(fast_dir):
    many_round_trips(fast_dir, 300, seed=336)


@pytest.mark.slow
def test_3000_random_trained_tokenizers_round_trip_through_every_format(fast_dir):
    many_round_trips(fast_dir, 3000, seed=3360)


# Custom regexes that Oniguruma (HF) reads as fancy-regex does: one covering all text, one not.
CUSTOM_ALL = r"\p{L}+(?=\s)|\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]+|\s+"
CUSTOM_SOME = r"[a-z]+| ?\p{N}|[<|>]"


@pytest.mark.parametrize("pattern", ["cl100k", "o200k", CUSTOM_ALL, CUSTOM_SOME], ids=["cl100k", "o200k", "custom", "custom-partial"])
def test_tokenizers_with_each_pattern_round_trip_through_every_format(fast_dir, pattern):
    """The pattern survives every format, and HF and tiktoken give our ids with it (HF: the
    named patterns as Isolated splits, a custom regex as a Removed, inverted split)."""
    many_round_trips(fast_dir, 40, seed=len(pattern), pattern=pattern)


@pytest.mark.parametrize("pattern", ["cl100k", "o200k", CUSTOM_SOME], ids=["cl100k", "o200k", "custom-partial"])
def test_each_pattern_loads_in_auto_tokenizer(transformers, tmp_path, pattern):
    rng = random.Random(17)
    specials = [EOT, "<|x|>"]
    corpus = random_text(rng, 6000, specials) + " HTMLParser's 1234567 don't\n\n  x " * 40
    tok = Tokenizer(*train_bpe_from_iterator([corpus], 700, specials, pattern=pattern), specials, pattern=pattern)
    tok.save(tmp_path / "tok")
    texts = [corpus[:3000], "1234567  \n\n x", "a\n  ", "Hello<|endoftext|> world!! 12 3456", ""]
    ids = [tok.encode(t) for t in texts]
    assert auto_ids(transformers, tmp_path / "tok", texts) == ids
    assert Tokenizer.load(tmp_path / "tok").pattern == tok.pattern == PATTERNS.get(pattern, pattern)


def test_a_possessive_counted_repetition_is_kept_out_of_tokenizer_json(tmp_path):
    """Oniguruma reads `x{1,3}+` as a repetition of a repetition: tokenizer.json would split
    `1234567` whole where we split `123`, `456`, `7`. Such a custom regex is refused there (and
    left out of a directory, with the reason), never written to give other ids."""
    pattern = r"\p{N}{1,3}+|\p{L}+|\s+|."
    tok = Tokenizer(*train_bpe_from_iterator(["1234567 abc " * 20], 270, pattern=pattern), pattern=pattern)
    assert [tok.decode([i]) for i in tok.encode("1234567")] != ["1234567"]
    with pytest.raises(ValueError, match="possessive counted repetition"):
        tok.save(tmp_path / "tokenizer.json")
    assert not (tmp_path / "tokenizer.json").exists()
    with pytest.warns(UserWarning, match="possessive counted repetition"):
        tok.save(tmp_path / "dir")
    assert not (tmp_path / "dir" / "tokenizer.json").exists()
    back = Tokenizer.load(tmp_path / "dir")
    assert back.pattern == pattern and back.encode("1234567 x") == tok.encode("1234567 x")
    # The same regex written as an atomic group is fine.
    atomic = r"(?>\p{N}{1,3})|\p{L}+|\s+|."
    tok = Tokenizer(tok.vocab, tok.merges, pattern=atomic)
    tok.save(tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.encode("1234567 abc", add_special_tokens=False).ids == tok.encode("1234567 abc")


def test_load_restores_the_pattern_and_refuses_a_contradicting_one(tmp_path):
    vocab, merges = train_bpe_from_iterator(["hello world 1234" + EOT], 270, [EOT], pattern="cl100k")
    tok = Tokenizer(vocab, merges, [EOT], pattern="cl100k")
    for name in ["dir", "tokenizer.json", "t.tiktoken"]:
        tok.save(tmp_path / name)
        path = tmp_path / name
        assert Tokenizer.load(path).pattern == CL100K_PATTERN
        # Agreeing arguments: the name or the regex.
        assert Tokenizer.load(path, pattern="cl100k").pattern == CL100K_PATTERN
        assert Tokenizer.load(path, pattern=CL100K_PATTERN).pattern == CL100K_PATTERN
        for other in ["gpt2", "o200k", r"\w+"]:
            with pytest.raises(ValueError, match="records the pattern"):
                Tokenizer.load(path, pattern=other)
        with pytest.raises(ValueError, match="unknown pre-tokenization pattern name"):
            Tokenizer.load(path, pattern="cl100k_base")
    # A GPT-2 pair without its sidecar records none: the argument gives it.
    tok.save_gpt2(tmp_path / "pair")
    (tmp_path / "pair" / "special_tokens.json").unlink()
    back = Tokenizer.from_files(tmp_path / "pair" / "vocab.json", tmp_path / "pair" / "merges.txt", [EOT], pattern="cl100k")
    assert back.pattern == CL100K_PATTERN and back.encode("1234 x") == tok.encode("1234 x")
    assert Tokenizer.load(tmp_path / "pair", [EOT]).pattern == GPT2_PATTERN
    assert Tokenizer.load(tmp_path / "pair", [EOT], pattern="o200k").pattern == O200K_PATTERN


def test_a_bad_recorded_pattern_names_the_file(tmp_path):
    tok = Tokenizer(*train_bpe_from_iterator(["hello world"], 260))
    tok.save(tmp_path / "tokenizer.json")
    obj = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    obj["pre_tokenizer"] = hf_pre_tokenizer(r"\w+")
    obj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"
    (tmp_path / "tokenizer.json").write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer.json: invalid pre-tokenization pattern"):
        Tokenizer.load(tmp_path / "tokenizer.json")


@pytest.mark.parametrize("special", ODD_SPECIALS)
def test_each_odd_special_token_round_trips(fast_dir, special):
    """The issue's cases one by one, with the special in the training text."""
    corpus = f'the cat  sat{special}on the mat, "said" é ĠĠ{NBSP}x ' * 30
    vocab, merges = train_bpe_from_iterator([corpus], 330, [special, EOT] if special != EOT else [EOT])
    tok = Tokenizer(vocab, merges, [special, EOT] if special != EOT else [EOT])
    texts = [corpus[:300], special * 3, f"a{special}b{EOT}", "  the  ", "é" + NBSP]
    round_trip_everywhere(tok, fast_dir, texts)
    # The special is matched only as itself; plain text around it keeps its ordinary ids.
    assert tok.encode(special) == [tok.special_token_ids[special]]


def test_odd_tokenizer_round_trips_and_saves_deterministically(fast_dir):
    """Tokens that are not UTF-8, a non-ASCII special, a hole in the ids; saving what was loaded
    gives the same bytes."""
    tok = small_tokenizer()
    round_trip_everywhere(tok, fast_dir, ["\xff a<|é|> a a[EOS]", "ÿþ a", ""])
    for name in ["dir", "gpt2", "tokenizer.json", "t.tiktoken"]:
        again = fast_dir / "again" / name
        again.parent.mkdir(exist_ok=True)
        back = Tokenizer.load(fast_dir / name)
        back.save_gpt2(again) if name == "gpt2" else back.save(again)
        for a in sorted((fast_dir / name).iterdir()) if again.is_dir() else [fast_dir / name]:
            assert a.read_bytes() == (again / a.name if again.is_dir() else again).read_bytes(), a


def test_explicit_special_ids_and_specials_over_existing_tokens(fast_dir):
    (fast_dir / "two").mkdir()
    """Specials with fixed ids (as tokenizer.json and tiktoken give them), and a special declared
    over an ordinary token that the merges use (its id is both)."""
    base = {i: bytes([i]) for i in range(256)}
    merges = [(b"h", b"e"), (b"he", b"llo"[0:1]), (b"l", b"o")]
    vocab = {**base, 256: b"he", 257: b"hel", 258: b"lo"}
    tok = Tokenizer(vocab, merges, {"<|end|>": 1000, "hel": None, "lo": 258})
    assert tok.special_token_ids == {"<|end|>": 1000, "hel": 257, "lo": 258}
    assert tok.encode("hello<|end|>") == [257, 258, 1000]
    round_trip_everywhere(tok, fast_dir, ["hello<|end|> help lo", "hel"])
    # A special with a fixed id of its own whose bytes an ordinary token also has (as HF files
    # give " the" added after GPT-2's vocabulary): text matches the special, BPE the ordinary.
    vocab2 = {**base, 256: b" t", 257: b" th", 258: b" the"}
    merges2 = [(b" ", b"t"), (b" t", b"h"), (b" th", b"e")]
    tok2 = Tokenizer(vocab2, merges2, {" the": 300, "<|end|>": 301})
    assert tok2.encode(" the th") == [300, 257] and tok2.encode_ordinary(" the") == [258]
    round_trip_everywhere(tok2, fast_dir / "two", [" the them<|end|>", "the th"])
    with pytest.raises(ValueError, match="special token 'x' has id 65, which the vocabulary gives to b'A'"):
        Tokenizer(vocab, merges, {"x": 65})


def test_hf_really_cannot_hold_a_special_spelled_like_another_token(tmp_path):
    """Why tokenizer.json is refused for 'é' beside the byte 0xE9: written anyway, HF gives the
    special the byte's id."""
    vocab, merges = train_bpe_from_iterator(["é is é"], 260, ["é"])
    tok = Tokenizer(vocab, merges, ["é"])
    assert tok.encode("é") == [0]
    byte_id = 1 + 0xE9
    data = {
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "é", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        ],
        "pre_tokenizer": hf_pre_tokenizer(GPT2_PATTERN),
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "vocab": {encode_token(t): i for i, t in tok.vocab.items() if i != 0}, "merges": []},
    }
    (tmp_path / "forced.json").write_text(json.dumps(data), encoding="utf-8")
    assert tokenizers.Tokenizer.from_file(str(tmp_path / "forced.json")).encode("é").ids == [byte_id]


# ---------------------------------------------------------------------------------------------
# GPT-2: the fixtures through every format, and against the peers
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_gpt2_through_every_format_matches_peers(gpt2, tiktoken_gpt2, fast_dir):
    text = (FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8")[:20_000] + EOT + " <|endoftext|>x"
    texts = [text, "Hello world", " the  the\n\n", EOT * 3]
    round_trip_everywhere(gpt2, fast_dir, texts)
    # GPT-2's merges come back from our .tiktoken (they are rebuilt from the ranks), and the
    # offline tiktoken GPT-2 encoding agrees.
    assert tiktoken_gpt2.encode(text, allowed_special="all") == gpt2.encode(text)


@needs_shared
def test_openai_gpt2_pair_loads_as_before(gpt2, tmp_path):
    pair = tmp_path / "pair"
    pair.mkdir()
    shutil.copy(FIXTURES / "gpt2_vocab.json", pair / "vocab.json")
    shutil.copy(FIXTURES / "gpt2_merges.txt", pair / "merges.txt")
    # A bare pair: GPT-2 marks <|endoftext|> only by making it with no merge.
    bare = Tokenizer.load(pair)
    assert bare.special_token_ids == {EOT: 50256} and bare.vocab == gpt2.vocab and bare.merges == gpt2.merges
    by_files = Tokenizer.from_files(pair / "vocab.json", pair / "merges.txt", [EOT])
    assert by_files.vocab == gpt2.vocab and by_files.special_token_ids == {EOT: 50256}
    plain = Tokenizer.from_files(pair / "vocab.json", pair / "merges.txt")
    assert plain.special_tokens == [] and plain.encode(EOT) == gpt2.encode_ordinary(EOT)


# ---------------------------------------------------------------------------------------------
# Hugging Face: transformers' AutoTokenizer and save_pretrained folders
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def auto_ids(transformers, directory: Path, texts: list[str]) -> list[list[int]]:
    auto = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    return [auto(t)["input_ids"] for t in texts]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=30), st.sampled_from(["<|endoftext|>", '"', " the", NBSP, "<|x|>", "ĠĠ", "é"])), max_size=8))
def test_random_unicode_with_specials_same_ids_in_ours_hf_and_transformers(trained_dir, transformers, parts):
    tok, directory, auto, hf = trained_dir
    text = "".join(parts)
    ids = tok.encode(text)
    assert Tokenizer.load(directory).encode(text) == ids
    assert hf.encode(text, add_special_tokens=False).ids == ids
    assert auto(text)["input_ids"] == ids


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, transformers):
    """A tokenizer trained with odd specials, saved as a directory, and loaded by HF and AutoTokenizer."""
    rng = random.Random(7)
    specials = [EOT, '"', " the", NBSP, "<|x|>"]  # HF-representable (no 'é' beside the byte 0xE9)
    corpus = random_text(rng, 5000, specials) + " the cat sat on the mat " * 50
    vocab, merges = train_bpe_from_iterator([corpus], 600, specials)
    tok = Tokenizer(vocab, merges, specials)
    directory = tmp_path_factory.mktemp("trained") / "tok"
    tok.save(directory)
    auto = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    hf = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    return tok, directory, auto, hf


@needs_shared
def test_gpt2_directory_loads_in_auto_tokenizer(gpt2, transformers, tmp_path):
    gpt2.save(tmp_path / "gpt2")
    texts = [(FIXTURES / "corpus.en").read_text(encoding="utf-8")[:5000], "Hello<|endoftext|> world", ""]
    assert auto_ids(transformers, tmp_path / "gpt2", texts) == [gpt2.encode(t) for t in texts]
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "gpt2"), local_files_only=True)
    assert auto.eos_token == EOT and auto.decode(gpt2.encode(texts[1])) == texts[1]


def test_reads_folders_written_by_save_pretrained(transformers, tmp_path):
    vocab, merges = train_bpe_from_iterator([random_text(random.Random(3), 3000)], 400, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    tok.save(tmp_path / "ours")
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "ours"), local_files_only=True)
    auto.add_special_tokens({"additional_special_tokens": ["<|extra|>"]})
    auto.save_pretrained(str(tmp_path / "theirs"))
    back = Tokenizer.load(tmp_path / "theirs")
    text = "hello<|extra|> world" + EOT
    assert back.encode(text) == auto(text)["input_ids"]
    assert back.special_token_ids[EOT] == 0 and back.special_token_ids["<|extra|>"] == tok.vocab_size
    # transformers' GPT-2 class over the GPT-2 fixtures, saved the way it saves.
    if (FIXTURES / "gpt2_vocab.json").exists():
        gpt2_slow = transformers.GPT2Tokenizer(str(FIXTURES / "gpt2_vocab.json"), str(FIXTURES / "gpt2_merges.txt"))
        gpt2_slow.save_pretrained(str(tmp_path / "gpt2_tf"))
        assert Tokenizer.load(tmp_path / "gpt2_tf").encode(text) == gpt2_slow(text)["input_ids"]


def test_refuses_other_tokenizer_kinds_by_name(tmp_path):
    from tokenizers import models, normalizers, pre_tokenizers, processors

    def save(name: str, tok: tokenizers.Tokenizer) -> Path:
        d = tmp_path / name
        d.mkdir()
        tok.save(str(d / "tokenizer.json"))
        return d

    wordpiece = tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    unigram = tokenizers.Tokenizer(models.Unigram([("a", -1.0), ("b", -2.0)], 0, False))
    with pytest.raises(TokenizerFileError, match=r"tokenizer.json:\d+: the model is 'WordPiece', not a byte-level BPE"):
        Tokenizer.load(save("wp", wordpiece))
    with pytest.raises(TokenizerFileError, match="the model is 'Unigram'"):
        Tokenizer.load(save("uni", unigram))

    base = tokenizers.Tokenizer(models.BPE({encode_token(bytes([b])): b for b in range(256)}, []))
    base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    ok = save("ok", base)
    assert Tokenizer.load(ok).vocab_size == 256
    cases = {
        "normalizer 'NFC'": lambda t: setattr(t, "normalizer", normalizers.NFC()),
        "add_prefix_space=true": lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True)),
        "pre_tokenizer Whitespace": lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Whitespace()),
        "TemplateProcessing adding '<s>'": lambda t: (
            t.add_special_tokens(["<s>"]),
            setattr(t, "post_processor", processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 256)])),
        ),
        "truncation": lambda t: t.enable_truncation(8),
        "padding": lambda t: t.enable_padding(),
    }
    for i, (what, change) in enumerate(cases.items()):
        t = tokenizers.Tokenizer.from_file(str(ok / "tokenizer.json"))
        change(t)
        with pytest.raises(TokenizerFileError, match=rf"tokenizer.json:\d+: .*{what}"):
            Tokenizer.load(save(f"c{i}", t))
    # Folders of other kinds, by their files.
    for name, what in [("tokenizer.model", "SentencePiece"), ("vocab.txt", "WordPiece")]:
        d = tmp_path / f"other_{name}"
        d.mkdir()
        (d / name).write_bytes(b"\x00\x01")
        with pytest.raises(TokenizerFileError, match=f"{name}: .*{what}"):
            Tokenizer.load(d)
    d = tmp_path / "bert_config"
    shutil.copytree(ok, d)
    (d / "tokenizer_config.json").write_text('{\n "tokenizer_class": "BertTokenizer"\n}\n', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer_config.json:2: tokenizer_class 'BertTokenizer'"):
        Tokenizer.load(d)


ONIGURUMA_DIFFERENCES = [  # (pattern, a text where Hugging Face splits otherwise or cannot load the pattern, named in the error)
    (r"^ab|\S|\s", "x\nab", "^ outside a character class"),
    (r"ab$|\S|\s", "ab\nx", "$ outside a character class"),
    (r"(?s)a.b|\S|\s", "a\nb", "inline flag(s) s"),
    (r"(?m)a.b|\S|\s", "a\nb", "inline flag(s) m"),
    (r"(?U)\S+|\s", "ab", "inline flag(s) U"),
    (r"(?P<w>\S)|\s", "ab", "(?P...) group"),
    (r"\p{sc=Latin}|\S|\s", "ab", r"\p{sc=Latin}"),
    (r"[a-c--b]+|\S|\s", "abc", "class operation --"),
    (r"[a~~b]+|\S|\s", "a~b", "class operation ~~"),
    (r"(?i)\p{Lu}+|\S|\s", "aB", r"case-dependent class \p{Lu}"),
    (r"\s|(?i:x|\P{Lu})+|\S", "ab", r"case-dependent class \P{Lu}"),
    (r"(?i)\s|[[:upper:]\d]+|\S", "ǅǆǄ", "case-dependent class [:upper:]"),
]


@pytest.mark.parametrize(("pattern", "text", "named"), ONIGURUMA_DIFFERENCES, ids=[c[2] for c in ONIGURUMA_DIFFERENCES])
def test_a_regex_oniguruma_reads_otherwise_is_kept_out_of_tokenizer_json(tmp_path, pattern, text, named):
    """Hugging Face runs a tokenizer.json regex with Oniguruma (Ruby syntax), which refuses some
    of fancy-regex's syntax and reads some alike-looking syntax otherwise (^ and $ are line
    anchors, m means dot-matches-newline). Such a custom regex is refused for tokenizer.json, by
    name, and left out of a directory with the reason; the other formats keep it."""
    try:  # what Hugging Face does with it: an error, or pieces other than ours
        split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="removed", invert=True)
        hf_pieces = [piece for piece, _ in split.pre_tokenize_str(text)]
    except Exception:
        hf_pieces = None
    tok = Tokenizer(*train_bpe_from_iterator([text * 20], 260, pattern=pattern), pattern=pattern)
    ours = [tok.decode([i]) for i in tok.encode(text)]
    assert hf_pieces != ours
    with pytest.raises(ValueError, match=re.escape(named)):
        tok.save(tmp_path / "tokenizer.json")
    assert not (tmp_path / "tokenizer.json").exists()
    with pytest.warns(UserWarning, match=re.escape(named)):
        tok.save(tmp_path / "dir")
    assert not (tmp_path / "dir" / "tokenizer.json").exists()
    tok.save(tmp_path / "t.tiktoken")
    for path in (tmp_path / "dir", tmp_path / "t.tiktoken"):
        back = Tokenizer.load(path)
        assert back.pattern == pattern and back.encode(text) == tok.encode(text)


@pytest.mark.parametrize(("pattern", "text", "named"), ONIGURUMA_DIFFERENCES[:5], ids=[c[2] for c in ONIGURUMA_DIFFERENCES[:5]])
def test_a_tokenizer_json_whose_regex_oniguruma_reads_otherwise_is_refused(tmp_path, pattern, text, named):
    """The reading side: a tokenizer.json from elsewhere whose regex Hugging Face reads otherwise
    than bpe336 would give other ids than the tools that wrote it; it is refused, by name."""
    tok = Tokenizer(*train_bpe_from_iterator([text * 20], 260))
    tok.save(tmp_path / "tokenizer.json")
    obj = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Removed", "invert": True}
    obj["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [split, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}],
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json.*" + re.escape(named)):
        Tokenizer.load(tmp_path / "tokenizer.json")


def test_regexes_oniguruma_reads_alike_are_written(tmp_path):
    """Escaped anchors, ^ and set operations inside classes, i and x flags, \\A and \\z are
    read alike by both engines and go into tokenizer.json as they are."""
    text = "^a$ b\n--c  x AbcBAc"
    for pattern in [
        r"\^|\$|[^\s]+|\s",
        r"[\^$-]|(?i:A)|(?x) \S | \s",
        r"\A\S|\S+\z|[[a-z]&&[^b]]|.|\n",
        r"[]a]|[[:alpha:]]+|\S|\s",
        r"(?i:a|[b-c])\p{Ll}*|(?i)(?-i:\p{Lu})+|\S|\s",  # case-dependent classes only where i is off
    ]:
        tok = Tokenizer(*train_bpe_from_iterator([text * 10], 270, pattern=pattern), pattern=pattern)
        tok.save(tmp_path / "tokenizer.json")
        assert tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(text).ids == tok.encode(text)


# ---------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------


def test_pattern_function_pair(tmp_path):
    assert hf_pre_tokenizer(GPT2_PATTERN) == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    for pattern in [GPT2_PATTERN, CL100K_PATTERN, O200K_PATTERN, GPT4_SPLIT_PATTERN, r"\w+|\s+"]:
        obj = hf_pre_tokenizer(pattern)
        assert pattern_from_hf(json.loads(json.dumps(obj))) == pattern
    # The named patterns are Isolated splits, as HF writes GPT-4-style tokenizers (cl100k's
    # possessive digit groups spelled greedily, which Oniguruma reads as meant).
    split = hf_pre_tokenizer(CL100K_PATTERN)
    assert split["type"] == "Sequence" and split["pretokenizers"][0] == {
        "type": "Split",
        "pattern": {"Regex": HF_CL100K_REGEX},
        "behavior": "Isolated",
        "invert": False,
    }
    assert HF_CL100K_REGEX != CL100K_PATTERN and r"\p{N}{1,3}|" in HF_CL100K_REGEX
    # Any other regex keeps exactly its matches (Removed, inverted), as tiktoken does.
    assert hf_pre_tokenizer(GPT4_SPLIT_PATTERN)["pretokenizers"][0] == {
        "type": "Split",
        "pattern": {"Regex": GPT4_SPLIT_PATTERN},
        "behavior": "Removed",
        "invert": True,
    }
    # HF reads both forms and splits text as the regex does.
    import regex

    text = "Hello, world!!  123456 don't\n\n  x"
    for pattern in [CL100K_PATTERN, GPT4_SPLIT_PATTERN]:
        base = json.loads(hf_tokenizer_for(tmp_path, pattern).read_text(encoding="utf-8"))
        hf = tokenizers.Tokenizer.from_str(json.dumps(base))
        assert [w for w, _ in hf.pre_tokenizer.pre_tokenize_str(text)] == [encode_token(p.encode()) for p in regex.findall(pattern, text)]
        assert Tokenizer.load(tmp_path / "tokenizer.json").pattern == pattern
    # HF's own spelling of the GPT-2 regex is the GPT-2 pattern.
    hf_split = {
        "type": "Sequence",
        "pretokenizers": [split["pretokenizers"][0] | {"pattern": {"Regex": GPT2_PATTERN}}, split["pretokenizers"][1]],
    }
    assert pattern_from_hf(hf_split) == GPT2_PATTERN


def hf_tokenizer_for(tmp_path: Path, pattern: str) -> Path:
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    obj = json.loads(path.read_text(encoding="utf-8"))
    obj["pre_tokenizer"] = hf_pre_tokenizer(pattern)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# tiktoken: rank order versus merge order
# ---------------------------------------------------------------------------------------------


def test_trained_merges_are_rank_consistent_and_tiktoken_agrees():
    """The proof in formats.py says train_bpe never makes the same bytes twice and tiktoken's
    rank-of-result merging equals ours; try it hard on tiny alphabets, where overlaps abound."""
    rng = random.Random(11)
    for _ in range(150):
        alphabet = rng.choice(["ab", "aab", "ab ", "abc", "a", "a b"])
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) * rng.randint(1, 3) for _ in range(rng.randint(1, 30))]
        vocab, merges = train_bpe_from_iterator([" ".join(words)], 256 + rng.randint(1, 100))
        check_rank_consistent(vocab, merges)
        assert len({a + b for a, b in merges}) == len(merges)
        enc = tiktoken.Encoding("t", pat_str=GPT2_PATTERN, mergeable_ranks={t: i for i, t in vocab.items()}, special_tokens={})
        tok = Tokenizer(vocab, merges)
        for _ in range(20):
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
            assert tok.encode(s) == enc.encode_ordinary(s)


def test_rank_inconsistent_merges_are_refused_and_would_differ(tmp_path):
    """A hand-made merge list where tiktoken differs: 'bc' merges first, so 'abc' made by
    ('ab', 'c') is never reached by our BPE, while tiktoken merges ('a', 'bc') into it."""
    vocab = {i: bytes([i]) for i in range(256)}
    merges = [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")]
    for i, (a, b) in enumerate(merges):
        vocab[256 + i] = a + b
    tok = Tokenizer(vocab, merges)
    enc = tiktoken.Encoding("t", pat_str=GPT2_PATTERN, mergeable_ranks={t: i for i, t in vocab.items()}, special_tokens={})
    assert tok.encode("abc") != enc.encode_ordinary("abc")  # the counter-example is real
    with pytest.raises(ValueError, match=r"merge 2 \('ab' \+ 'c'\): the earlier merges already split 'abc' otherwise"):
        tok.save(tmp_path / "x.tiktoken")
    assert not (tmp_path / "x.tiktoken").exists()
    # Other ways to be inconsistent: a token no merge makes, a result below its parts' rank.
    orphan = Tokenizer({**{i: bytes([i]) for i in range(256)}, 300: b"xyz"}, [])
    with pytest.raises(ValueError, match="made by no merge"):
        orphan.save(tmp_path / "o.tiktoken")
    low = Tokenizer({**{i: bytes([i]) for i in range(256)}, 301: b"ab", 300: b"bc"}, [(b"a", b"b"), (b"b", b"c")])
    enc = tiktoken.Encoding("t", pat_str=GPT2_PATTERN, mergeable_ranks={t: i for i, t in low.vocab.items()}, special_tokens={})
    assert low.encode("abc") != enc.encode_ordinary("abc")
    with pytest.raises(ValueError, match="tiktoken ranks by id"):
        low.save(tmp_path / "l.tiktoken")


def test_tiktoken_needs_its_pattern_and_specials(tmp_path):
    vocab, merges = train_bpe_from_iterator(["hello hello world" + EOT], 270, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    tok.save(tmp_path / "t.tiktoken")
    side = tiktoken_sidecar_path(tmp_path / "t.tiktoken")
    # Without the sidecar: the caller says what it would have said.
    (tmp_path / "bare.tiktoken").write_bytes((tmp_path / "t.tiktoken").read_bytes())
    with pytest.raises(TokenizerFileError, match=r"bare.tiktoken: .*pattern"):
        Tokenizer.load(tmp_path / "bare.tiktoken")
    back = Tokenizer.load(tmp_path / "bare.tiktoken", special_tokens={EOT: 0}, pattern=GPT2_PATTERN)
    assert back.vocab == tok.vocab and back.special_token_ids == {EOT: 0}
    # A sidecar from another save (the rank file changed under it) is refused.
    other = Tokenizer(*train_bpe_from_iterator(["other text entirely" + EOT], 270, [EOT]), [EOT])
    (tmp_path / "t.tiktoken").write_text(
        "".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in sorted(other.vocab.items()) if i != 0), encoding="utf-8"
    )
    with pytest.raises(TokenizerFileError, match=rf"{side.name}: .*t.tiktoken was changed after this file was written"):
        Tokenizer.load(tmp_path / "t.tiktoken")


def test_tiktoken_save_interrupted_between_its_two_files(tmp_path, monkeypatch):
    # The rank file and its sidecar are two files: a save stopped between them (a kill, Ctrl-C)
    # must leave nothing that loads as the new ranks without their special tokens.
    import bpe336.formats as formats

    old = Tokenizer(*train_bpe_from_iterator(["hello hello world" + EOT], 270, [EOT]), [EOT])
    new = Tokenizer(*train_bpe_from_iterator(["other text entirely" + EOT], 280, [EOT]), [EOT])
    real = formats.atomic_write

    def second_write_interrupted(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(formats, "atomic_write", second_write_interrupted)
    # A new path: no rank file that loads (with a pattern given) without its specials.
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "fresh.tiktoken")
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "fresh.tiktoken", pattern="gpt2")
    # Over a previous save: the mismatch is refused, naming the likely cause.
    monkeypatch.setattr(formats, "atomic_write", real)
    old.save(tmp_path / "t.tiktoken")
    monkeypatch.setattr(formats, "atomic_write", second_write_interrupted)
    calls = []
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "t.tiktoken")
    with pytest.raises(TokenizerFileError, match="sha256 mismatch: an edit, or a save interrupted"):
        Tokenizer.load(tmp_path / "t.tiktoken")
    monkeypatch.setattr(formats, "atomic_write", real)
    new.save(tmp_path / "t.tiktoken")
    assert Tokenizer.load(tmp_path / "t.tiktoken").vocab == new.vocab
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.tiktoken.json", "t.tiktoken", "t.tiktoken.json"]


# ---------------------------------------------------------------------------------------------
# Malformed files: one clear error with the path and the line
# ---------------------------------------------------------------------------------------------


def small_tokenizer() -> Tokenizer:
    """Bytes that are not UTF-8, a non-ASCII special, ids with a hole."""
    vocab = {i: bytes([i]) for i in range(256)}
    merges = [(b"\xff", b"\xfe"), (b" ", b"a"), (b"\xff\xfe", b" a")]
    for i, (a, b) in enumerate(merges):
        vocab[300 + i] = a + b
    return Tokenizer(vocab, merges, special_tokens=["<|é|>", "[EOS]"])


def lines_with(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1) if needle in line)


def rewrite(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def test_gpt2_pair_errors_name_path_and_line(tmp_path):
    tok = small_tokenizer()
    ok = tmp_path / "ok"
    tok.save_gpt2(ok)

    def broken(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(ok, d)
        (d / "special_tokens.json").unlink()  # the bare pair: no checksums to trip first
        return d

    d = broken("unknown_part")
    (d / "merges.txt").write_text("#version: 0.2\nĠ a\nq z\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"unknown_part/merges.txt:3: merge 'q' \+ 'z': its result 'qz' is not in the vocabulary"):
        Tokenizer.load(d)
    d = broken("unknown_left")
    (d / "merges.txt").write_text("#version: 0.2\nĠ a\n\nĠa ÿ\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges.txt:4: merge ' a' \+ b'\\xff': its result .* is not in the vocabulary"):
        Tokenizer.load(d)
    d = broken("three_parts")
    (d / "merges.txt").write_text("#version: 0.2\nĠ a\nthree parts here\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges.txt:3: expected two space-separated tokens"):
        Tokenizer.load(d)
    d = broken("not_utf8")
    (d / "merges.txt").write_bytes(b"#version: 0.2\n\xc4\xa0 a\nx \xff\n")
    with pytest.raises(TokenizerFileError, match=r"merges.txt:3: merges.txt is not UTF-8 \(byte 0xff at byte offset 21\)"):
        Tokenizer.load(d)
    d = broken("dup_id")
    rewrite(d / "vocab.json", '"ā": 1,', '"ā": 0,')
    with pytest.raises(TokenizerFileError, match=rf"vocab.json:{lines_with(d / 'vocab.json', 'ā')}: id 0 is used twice"):
        Tokenizer.load(d)
    d = broken("dup_key")
    rewrite(d / "vocab.json", '"ă": 3,', '"Ā": 3,')
    with pytest.raises(TokenizerFileError, match=r"vocab.json:5: key 'Ā' appears twice"):
        Tokenizer.load(d)
    d = broken("bad_id")
    rewrite(d / "vocab.json", '"ā": 1,', '"ā": "one",')
    with pytest.raises(TokenizerFileError, match=r"vocab.json:3: token 'ā' has id 'one'; ids must be integers"):
        Tokenizer.load(d)
    d = broken("huge_id")
    rewrite(d / "vocab.json", '"ā": 1,', f'"ā": {2**40},')
    with pytest.raises(TokenizerFileError, match=r"vocab.json:3: token 'ā' has id 1099511627776"):
        Tokenizer.load(d)
    d = broken("syntax")
    rewrite(d / "vocab.json", '"ā": 1,', '"ā": ,')
    with pytest.raises(TokenizerFileError, match=r"vocab.json:3: malformed vocab.json: Expecting value"):
        Tokenizer.load(d)
    d = broken("not_object")
    (d / "vocab.json").write_text('["a", "b"]\n', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab.json:1: vocab.json must be a JSON object"):
        Tokenizer.load(d)
    d = broken("truncated")
    (d / "vocab.json").write_text((ok / "vocab.json").read_text(encoding="utf-8")[:500], encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"truncated/vocab.json:\d+: malformed vocab.json"):
        Tokenizer.load(d)
    d = broken("missing_byte")
    rewrite(d / "vocab.json", ' "A": 65,\n', "")
    with pytest.raises(TokenizerFileError, match=r"missing_byte/vocab.json: .*no token for byte 0x41"):
        Tokenizer.load(d)


def test_sidecar_errors_name_path_and_line(tmp_path):
    tok = small_tokenizer()
    ok = tmp_path / "ok"
    tok.save_gpt2(ok)
    cases = {
        "special_id": (' "[EOS]": 304', ' "[EOS]": -4', r"special_tokens.json:\d+: special token '\[EOS\]' has id -4"),
        "special_clash": (
            ' "[EOS]": 304',
            ' "[EOS]": 300',
            r"special_tokens.json: special token '\[EOS\]' has id 300, which the vocabulary gives to",
        ),
        "version": ('"version": 1', '"version": 7', r"special_tokens.json:3: unsupported version 7"),
        "syntax": ('"version": 1,', '"version": 1', r"special_tokens.json:4: malformed special-token file"),
        "empty": (' "[EOS]": 304', ' "": 304', r"special_tokens.json:\d+: a special token is empty"),
    }
    for name, (old, new, error) in cases.items():
        d = tmp_path / name
        shutil.copytree(ok, d)
        rewrite(d / "special_tokens.json", old, new)
        with pytest.raises(TokenizerFileError, match=error):
            Tokenizer.load(d)
    # A vocab.json changed after the sidecar was written: the pair does not belong together.
    d = tmp_path / "mixed"
    shutil.copytree(ok, d)
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["[EOS]"]).save_gpt2(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "vocab.json", d / "vocab.json")
    with pytest.raises(TokenizerFileError, match=r"special_tokens.json: .*vocab.json was changed after this file was written"):
        Tokenizer.load(d)
    # The old sidecar (a list of strings) still reads; a bad entry is located.
    d = tmp_path / "old_list"
    shutil.copytree(ok, d)
    (d / "special_tokens.json").write_text('[\n "<|é|>",\n 5\n]\n', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"special_tokens.json:3: entry 1 must be a non-empty string"):
        Tokenizer.load(d)


def test_tokenizer_json_errors_name_path_and_line(tmp_path):
    tok = small_tokenizer()
    ok = tmp_path / "tokenizer.json"
    tok.save(ok)
    cases = {
        "merge_part": ('"ÿ þ"', '"ÿ qq"', "merge 0 .*'qq' is not a byte-level token of model.vocab"),
        "merge_result": ('"Ġ a"', '"a Ġ"', r"merge 1 .*the result 'aĠ' is not in model.vocab"),
        "merge_form": ('"Ġ a"', '"Ġ a b"', r"merge 1 must be two tokens"),
        "dup_id": ('"ā": 1,', '"ā": 0,', "id 0 is used twice"),
        "bad_key": ('"ā": 1,', '"a b": 1,', "model.vocab key 'a b' is neither a byte-level token string nor an added token"),
        "added_id": ('"id": 304', '"id": 305', r"added token '\[EOS\]' has id 305 but model.vocab gives it id 304"),
        "lstrip": ('"lstrip": false', '"lstrip": true', "has lstrip=true"),
        "dropout": ('"dropout": null', '"dropout": 0.1', "BPE dropout 0.1"),
        "ignore_merges": ('"ignore_merges": false', '"ignore_merges": true', "ignore_merges=true"),
        "suffix": ('"end_of_word_suffix": null', '"end_of_word_suffix": "</w>"', "end_of_word_suffix '</w>'"),
    }
    for name, (old, new, error) in cases.items():
        path = tmp_path / name / "tokenizer.json"
        path.parent.mkdir()
        path.write_text(ok.read_text(encoding="utf-8"), encoding="utf-8")
        line = lines_with(path, old)
        rewrite(path, old, new)
        with pytest.raises(TokenizerFileError, match=rf"{name}/tokenizer.json:{line}: .*{error}"):
            Tokenizer.load(path)
    path = tmp_path / "truncated.json"
    path.write_text(ok.read_text(encoding="utf-8")[:2000], encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"truncated.json:\d+: malformed tokenizer file"):
        Tokenizer.load(path)
    path = tmp_path / "garbage.json"
    path.write_bytes(b"\x00\xff garbage")
    with pytest.raises(TokenizerFileError, match=r"garbage.json:1: tokenizer file is not UTF-8"):
        Tokenizer.load(path)
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"list.json:1: not a tokenizer file"):
        Tokenizer.load(path)
    tok.save_gpt2(tmp_path / "pair")
    with pytest.raises(TokenizerFileError, match="looks like a GPT-2 vocab.json"):
        Tokenizer.load(tmp_path / "pair" / "vocab.json")


def test_tiktoken_errors_name_path_and_line(tmp_path):
    good = f"{base64.b64encode(b'a').decode()} 0\n"
    cases = {
        "fields": (good + "YWI=\n", r"bad1.tiktoken:2: expected 'base64-token rank'"),
        "base64": (good + "!!!! 1\n", r"bad2.tiktoken:2: '!!!!' is not base64"),
        "dup": (good + f"{base64.b64encode(b'a').decode()} 1\n", r"bad3.tiktoken:2: token 'a' or rank 1 appears twice"),
        "unbuildable": (good + f"{base64.b64encode(b'xyz').decode()} 1\n", r"bad4.tiktoken:2: token 'xyz' \(rank 1\) cannot be built"),
    }
    for i, (text, error) in enumerate(cases.values(), 1):
        path = tmp_path / f"bad{i}.tiktoken"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(TokenizerFileError, match=error):
            Tokenizer.load(path, pattern=GPT2_PATTERN)
    (tmp_path / "empty.tiktoken").write_bytes(b"")
    with pytest.raises(TokenizerFileError, match="empty.tiktoken: no ranks"):
        Tokenizer.load(tmp_path / "empty.tiktoken", pattern=GPT2_PATTERN)


def test_numbers_python_cannot_convert_are_file_errors_with_a_line(tmp_path):
    """Integers of more than 4,300 digits (Python's int() limit) and ids spelled with non-ASCII
    digits ('²'.isdigit() is True, int('²') fails) are malformed files, located, never a bare
    ValueError from int()."""
    tok = small_tokenizer()
    tok.save_gpt2(tmp_path / "pair")
    (tmp_path / "hf").mkdir()
    tok.save(tmp_path / "hf" / "tokenizer.json")
    huge = "9" * 5000

    d = tmp_path / "vocab_huge"
    shutil.copytree(tmp_path / "pair", d)
    (d / "special_tokens.json").unlink()
    rewrite(d / "vocab.json", '"ā": 1,', f'"ā": {huge},')
    with pytest.raises(TokenizerFileError, match=r"vocab_huge/vocab.json:3: malformed vocab.json: an integer of 5,000"):
        Tokenizer.load(d)
    for name, key in [("dup_sup", "\u00b2"), ("dup_huge", huge), ("dup_big", "4294967296")]:
        d = tmp_path / name
        shutil.copytree(tmp_path / "pair", d)
        rewrite(d / "special_tokens.json", '"format"', f'"duplicates": {{"{key}": "a"}},\n "format"')
        with pytest.raises(TokenizerFileError, match=rf"{name}/special_tokens.json:2: duplicates entry"):
            Tokenizer.load(d)
    for name, key in [("hf_sup", "\u00b2"), ("hf_huge", huge)]:
        path = tmp_path / name / "tokenizer.json"
        path.parent.mkdir()
        obj = json.loads((tmp_path / "hf" / "tokenizer.json").read_text(encoding="utf-8"))
        obj["model"]["bpe336_duplicates"] = {"KEY": "a"}
        path.write_text(json.dumps(obj, indent=1).replace('"KEY"', f'"{key}"'), encoding="utf-8")
        with pytest.raises(TokenizerFileError, match=rf"{name}/tokenizer.json:\d+: model.bpe336_duplicates entry"):
            Tokenizer.load(path)
    path = tmp_path / "huge.tiktoken"
    path.write_text(f"{base64.b64encode(b'a').decode()} {huge}\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"huge.tiktoken:1: empty token or rank 9+ out of range"):
        Tokenizer.load(path, pattern=GPT2_PATTERN)


def test_missing_and_wrong_kind_of_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json: no such file"):
        Tokenizer.load(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="No such file"):
        Tokenizer.from_files(tmp_path / "missing.json", tmp_path / "merges.txt")
    with pytest.raises(IsADirectoryError):
        Tokenizer.from_files(tmp_path, tmp_path / "merges.txt")
    with pytest.raises(FileNotFoundError, match="no tokenizer here"):
        Tokenizer.load(tmp_path)


# ---------------------------------------------------------------------------------------------
# Files written by earlier versions still load
# ---------------------------------------------------------------------------------------------


def test_reads_the_retired_single_file_format(tmp_path):
    tok = small_tokenizer()
    legacy = {
        "format": "bpe336-tokenizer",
        "version": 1,
        "byte_encoding": "gpt2",
        "pattern": GPT2_PATTERN,
        "special_tokens": tok.special_tokens,
        "vocab": [[i, encode_token(t)] for i, t in sorted(tok.vocab.items())],
        "merges": [[encode_token(a), encode_token(b)] for a, b in tok.merges],
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(legacy, ensure_ascii=False, indent=1), encoding="utf-8")
    back = Tokenizer.load(path)
    assert back.vocab == tok.vocab and back.merges == tok.merges and back.special_token_ids == tok.special_token_ids
    legacy["vocab"][258][0] = 5
    path.write_text(json.dumps(legacy, ensure_ascii=False, indent=1), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"old.json:\d+: vocab entry 258: id 5 is used twice"):
        Tokenizer.load(path)


def test_reads_directories_of_bpe336_0_1(tmp_path):
    """bpe336 train 0.1 wrote specials into vocab.json as text and no list: keys that cannot be
    byte-level strings are specials (' the', a no-break space), and a Tokenizer.save sidecar
    written as a plain list still names them."""
    vocab, merges = train_bpe_from_iterator(["the cat sat on the mat" + NBSP + " the end"], 280, [" the", NBSP])
    d = tmp_path / "old"
    d.mkdir()
    keys = {(t.decode() if i < 2 else encode_token(t)): i for i, t in vocab.items()}
    (d / "vocab.json").write_text(json.dumps(keys, ensure_ascii=False), encoding="utf-8")
    (d / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{encode_token(a)} {encode_token(b)}\n" for a, b in merges), encoding="utf-8"
    )
    back = Tokenizer.load(d)
    assert back.special_token_ids == {" the": 0, NBSP: 1} and back.vocab == vocab
    (d / "special_tokens.json").write_text(json.dumps([" the", NBSP]), encoding="utf-8")
    assert Tokenizer.load(d).special_token_ids == {" the": 0, NBSP: 1}


def test_train_cli_directory_carries_specials_exactly(tmp_path):
    """The issue's reproducers: `bpe336 train --special-token` with 'ĠĠ', '"', 'é', ' the' and a
    no-break space, then load: the same specials, and plain text keeps its ordinary ids."""
    from bpe336.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text(('the cat  said "hi" é x' + NBSP + "y ĠĠ " + EOT) * 40, encoding="utf-8")
    specials = ["ĠĠ", '"', "é", " the", NBSP, EOT]
    args = ["train", str(corpus), "--vocab-size", "320", "--out", str(tmp_path / "tok"), "--no-progress"]
    for s in specials:
        args += ["--special-token", s]
    assert main(args) == 0
    vocab, merges = train_bpe(corpus, 320, specials)
    back = Tokenizer.load(tmp_path / "tok")
    assert back.vocab == vocab and back.merges == merges
    assert back.special_token_ids == {s: i for i, s in enumerate(specials)}
    assert back.encode("  ") != back.encode("ĠĠ") == [0]
    assert back.encode("the cat") == Tokenizer(vocab, merges, specials).encode("the cat")
