"""Type stubs for the Rust extension `bpe336._core` (rust/py.rs). Use the typed wrappers in
`bpe336.train` and `bpe336.tokenizer`; these are their building blocks."""

from collections.abc import Callable, Iterable, Sequence
from os import PathLike

GPT2_PATTERN: str
CL100K_PATTERN: str
O200K_PATTERN: str
TIKTOKEN_GPT2_PATTERN: str
PATTERN_NAMES: list[str]
DEFAULT_CHUNK_SIZE: int
COUNTS_FORMAT_VERSION: int

_Progress = Callable[[str, int, int], object]

def train_bpe_files(
    paths: Sequence[str | PathLike[str]],
    vocab_size: int,
    special_tokens: Sequence[str],
    num_threads: int | None = None,
    chunk_size: int | None = None,
    progress: _Progress | None = None,
    pattern: str = "gpt2",
) -> tuple[list[bytes], list[tuple[bytes, bytes]], dict[str, int | float]]: ...
def train_bpe_iter(
    iterable: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str],
    num_threads: int | None = None,
    chunk_size: int | None = None,
    progress: _Progress | None = None,
    pattern: str = "gpt2",
) -> tuple[list[bytes], list[tuple[bytes, bytes]], dict[str, int | float]]: ...
def resolve_pattern(pattern: str) -> tuple[str, str]: ...
def pretokenize(text: str, pattern: str = "gpt2") -> list[str]: ...
def default_threads() -> int: ...
def max_threads() -> int: ...
def _panic_for_test() -> None: ...
def char_classes() -> bytes: ...

class CountsFileError(ValueError): ...

class PretokenCounts:
    def __len__(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def input_bytes(self) -> int: ...
    @property
    def pattern(self) -> str: ...
    @property
    def pattern_name(self) -> str: ...
    @property
    def special_tokens(self) -> list[str]: ...
    def items(self) -> list[tuple[bytes, int]]: ...
    def __eq__(self, other: object) -> bool: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> PretokenCounts: ...
    def save(self, path: str | PathLike[str]) -> None: ...
    @staticmethod
    def load(path: str | PathLike[str]) -> PretokenCounts: ...
    def merge(self, others: Sequence[PretokenCounts]) -> PretokenCounts: ...
    def train(
        self,
        vocab_size: int,
        special_tokens: Sequence[str],
        num_threads: int | None = None,
        progress: _Progress | None = None,
        pattern: str | None = None,
    ) -> tuple[list[bytes], list[tuple[bytes, bytes]], dict[str, int | float]]: ...

def count_files(
    paths: Sequence[str | PathLike[str]],
    special_tokens: Sequence[str],
    num_threads: int | None = None,
    chunk_size: int | None = None,
    progress: _Progress | None = None,
    pattern: str = "gpt2",
) -> PretokenCounts: ...
def count_iter(
    iterable: Iterable[str],
    special_tokens: Sequence[str],
    num_threads: int | None = None,
    chunk_size: int | None = None,
    progress: _Progress | None = None,
    pattern: str = "gpt2",
) -> PretokenCounts: ...
def count_range(
    path: str | PathLike[str],
    start: int,
    end: int,
    special_tokens: Sequence[str],
    num_threads: int | None = None,
    chunk_size: int | None = None,
    progress: _Progress | None = None,
    pattern: str = "gpt2",
) -> tuple[PretokenCounts, tuple[int, int] | None]: ...
def owned_range(
    path: str | PathLike[str], start: int, end: int, special_tokens: Sequence[str], pattern: str = "gpt2"
) -> tuple[int, int] | None: ...

class FileProgress:
    def __init__(self) -> None: ...
    @property
    def bytes_done(self) -> int: ...
    def cancel(self) -> None: ...

class Encoder:
    def __init__(
        self,
        vocab: Sequence[tuple[int, bytes]],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Sequence[tuple[str, int]] = ...,
        pattern: str = "gpt2",
    ) -> None: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def special_tokens(self) -> list[str]: ...
    @property
    def pattern(self) -> str: ...
    @property
    def pattern_name(self) -> str: ...
    def encode(self, text: str) -> list[int]: ...
    def encode_ordinary(self, text: str) -> list[int]: ...
    def encode_prefix(self, text: str) -> tuple[list[int], int]: ...
    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]: ...
    def encode_to_bytes(self, text: str, width: int, num_threads: int | None = None) -> bytearray: ...
    def encode_file(
        self,
        input: str | PathLike[str],
        output: str | PathLike[str],
        header_len: int,
        width: int,
        num_threads: int | None = None,
        progress: FileProgress | None = None,
    ) -> tuple[int, int, int]: ...
    def encode_file_range(
        self,
        input: str | PathLike[str],
        start: int,
        end: int,
        output: str | PathLike[str],
        header_len: int,
        width: int,
        num_threads: int | None = None,
        progress: FileProgress | None = None,
    ) -> tuple[int, int, int, tuple[int, int] | None]: ...
    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...
    def token_bytes(self, id: int) -> bytes | None: ...
