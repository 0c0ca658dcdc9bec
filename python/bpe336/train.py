"""`train_bpe`: train a byte-level BPE tokenizer (Rust core). (Filled in by the trainer work.)"""


def train_bpe(input_path, vocab_size, special_tokens=(), **options):
    raise NotImplementedError
