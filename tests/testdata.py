"""Constants shared by every test module: where the shared data lives, and the skip marker for
tests that need it. (Fixtures live in each folder's conftest.py; pytest's `pythonpath` setting
puts this folder on sys.path, so tests import it as `testdata`.)"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The checkout."""
SHARED = ROOT.parent / "shared"
"""Data beside the checkout: fixtures/ (small reference files) and data/ (real corpora)."""
FIXTURES = SHARED / "fixtures"
DATA = SHARED / "data"
CONFIGS = ROOT / "configs"
EOT = "<|endoftext|>"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared test data not found at {SHARED}")


def needs_file(path: Path) -> pytest.MarkDecorator:
    """Skip unless `path` (under ../shared) exists."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present")
