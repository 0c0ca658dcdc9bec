"""Type stubs for the Rust extension `bpe336._core` (rust/py.rs). Use the typed wrappers in
`bpe336.train` and `bpe336.tokenizer`; these are their building blocks."""

from collections.abc import Callable, Iterable, Sequence
from os import PathLike

GPT2_PATTERN: str
DEFAULT_CHUNK_SIZE: int

_Progress = Callable[[str, int, int], object]

def train_bpe_files(
    paths: Sequence[str | PathLike[str]],
    vocab_size: int,
    special_tokens: Sequence[str],
    num_threads: int | None = None,
    chunk_size: int | None = None,
    progress: _Progress | None = None,
) -> tuple[list[bytes], list[tuple[bytes, bytes]], dict[str, int | float]]: ...
def train_bpe_iter(
    iterable: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str],
    num_threads: int | None = None,
    chunk_size: int | None = None,
    progress: _Progress | None = None,
) -> tuple[list[bytes], list[tuple[bytes, bytes]], dict[str, int | float]]: ...
def pretokenize(text: str) -> list[str]: ...
def default_threads() -> int: ...
def max_threads() -> int: ...
def char_classes() -> bytes: ...

class FileProgress:
    def __init__(self) -> None: ...
    @property
    def bytes_done(self) -> int: ...

class Encoder:
    def __init__(
        self,
        vocab: Sequence[tuple[int, bytes]],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Sequence[tuple[str, int]] = ...,
    ) -> None: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def special_tokens(self) -> list[str]: ...
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
    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...
    def token_bytes(self, id: int) -> bytes | None: ...
