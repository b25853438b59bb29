#!/usr/bin/python3
"""Writes a generic multiple-choice task built from the TinyStories fixture
text (deterministic; rerun to regenerate the test data):
  stories_next_sentence.jsonl (32 items): the first two sentences of a
    paragraph as context; the true next sentence and three distractors, each
    the third sentence of another paragraph.
  stories_which_context.jsonl (64 items, "partial"): the third sentence of a
    paragraph as the shared continuation; the paragraph's first two
    sentences and those of three other paragraphs as the contexts
    (WinoGrande-style partial scoring: only the context differs).
Only the second half of the text is used: the conversion tests calibrate on
the first half of the token stream.

usage: make_story_tasks.py FIXTURES_DIR OUT.jsonl [ITEMS [partial]]
"""
import json
import random
import re
import sys


def sentences(paragraph):
    parts = re.split(r"(?<=[.!?])\s+", paragraph.strip())
    return [p for p in parts if p]


def main():
    fixtures, out = sys.argv[1], sys.argv[2]
    n_items = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    partial = len(sys.argv) > 4 and sys.argv[4] == "partial"
    with open(f"{fixtures}/tinystories/tinystories_val_head.txt",
              encoding="utf-8") as f:
        text = f.read()
    paragraphs = []
    for p in text[len(text) // 2:].split("\n\n")[1:]:
        s = sentences(p)
        # ASCII only (the fixture's mojibake is noise), sentences of a
        # sensible length.
        if (len(s) >= 4 and p.isascii() and
                all(15 <= len(x) <= 90 for x in s[:4])):
            paragraphs.append(s)
    rng = random.Random(20261204)
    rng.shuffle(paragraphs)
    k = 2  # context sentences
    items = []
    pool = paragraphs[n_items:]
    for i, s in enumerate(paragraphs[:n_items]):
        if partial:
            # Which paragraph opening does this sentence continue?
            others = [" ".join(q[:k]) for q in rng.sample(pool, 3)]
            contexts = others + [" ".join(s[:k])]
            rng.shuffle(contexts)
            items.append({"contexts": contexts, "continuation": s[k],
                          "label": contexts.index(" ".join(s[:k]))})
            continue
        true = s[k]
        distractors = [q[k] for q in rng.sample(pool, 3)]
        choices = distractors + [true]
        rng.shuffle(choices)
        items.append({"context": " ".join(s[:k]), "choices": choices,
                      "label": choices.index(true)})
    with open(out, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    main()
