"""`Tokenizer`: GPT-2-compatible byte-level BPE encoding and decoding (Rust core).
(Filled in by the encoder work.)"""


class Tokenizer:
    pass
