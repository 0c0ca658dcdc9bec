"""bpe336: a byte-level BPE tokenizer whose hot paths are Rust.

from bpe336 import train_bpe, Tokenizer
vocab, merges = train_bpe("corpus.txt", vocab_size=10_000, special_tokens=["<|endoftext|>"])
tok = Tokenizer(vocab, merges, special_tokens=["<|endoftext|>"])
assert tok.decode(tok.encode("Hello")) == "Hello"
# other pre-tokenization patterns: pattern="cl100k", "o200k" or any regex (see bpe336.pattern)
# counts kept, merged and trained from: bpe336.counts; on a Ray cluster: bpe336.cluster
"""

from .counts import CountsFileError, PretokenCounts, count_pretokens, count_pretokens_from_iterator
from .formats import TokenizerFileError, load_gpt2_files, save_gpt2_files
from .pattern import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN
from .tokenizer import Tokenizer
from .train import train_bpe, train_bpe_from_iterator

__all__ = [
    "CL100K_PATTERN",
    "CountsFileError",
    "GPT2_PATTERN",
    "O200K_PATTERN",
    "PretokenCounts",
    "Tokenizer",
    "TokenizerFileError",
    "count_pretokens",
    "count_pretokens_from_iterator",
    "train_bpe",
    "train_bpe_from_iterator",
    "load_gpt2_files",
    "save_gpt2_files",
]
