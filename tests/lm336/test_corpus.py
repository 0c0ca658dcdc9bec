"""Tests for lm336.corpus, the offline default corpus of generated children's stories.

Run: pytest tests/test_corpus.py -q
"""

from __future__ import annotations

import random
import re

import pytest

from lm336.corpus import EOT, generate_story, iter_stories, write_stories


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    write_stories(a, size_mb=0.1, seed=7)
    write_stories(b, size_mb=0.1, seed=7)
    write_stories(c, size_mb=0.1, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_layout_and_size(tmp_path):
    path = tmp_path / "stories.txt"
    info = write_stories(path, size_mb=0.2, seed=0)
    data = path.read_bytes()
    assert info["bytes"] == len(data) and 200_000 <= len(data) < 205_000
    text = data.decode("utf-8")
    docs = text.split(f"\n{EOT}\n")
    assert docs[-1] == "" and len(docs) - 1 == info["documents"] == text.count(EOT)
    for doc in docs[:-1]:
        assert doc and EOT not in doc and doc[0].isupper() and doc.rstrip()[-1] in '.!"'


def test_varied_enough_to_learn_english():
    stories = [s for s, _ in zip(iter_stories(0), range(2000))]
    sentences = {s for story in stories for s in re.split(r"(?<=[.!?])\s+", story)}
    words = {w for story in stories for w in re.findall(r"[A-Za-z']+", story)}
    assert len(set(stories)) == len(stories)
    assert len(sentences) > 5000 and len(words) > 400
    openings = {s.split(",")[0].split(" there")[0] for s in stories}
    assert len(openings) > 20


def test_stories_are_consistent():
    # Within a story the hero's name recurs and the lost toy is the one found.
    rng = random.Random(3)
    checked = 0
    for _ in range(300):
        story = generate_story(rng)
        m = re.search(r"could not find (?:his|her) ([a-z ]+)\.", story)
        if m:
            assert f"the {m.group(1)}" in story.split(m.group(0))[1]
            checked += 1
    assert checked > 5


def test_bad_size(tmp_path):
    with pytest.raises(ValueError, match="size_mb"):
        write_stories(tmp_path / "x.txt", size_mb=0)
