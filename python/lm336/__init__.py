"""lm336: a decoder-only Transformer language model written from first principles in PyTorch."""

__all__: list[str] = []
