"""Independent reference for segrun's CLIP BPE tokenizer (models/clip/tokenizer.cpp).

Written from the description of OpenAI CLIP's simple_tokenizer (research/models.md section 6):
byte-level BPE over bytes_to_unicode stand-ins, `</w>` on a word's last symbol, the first
49152-256-2 merges of the gz vocabulary, <|startoftext|> 49406 / <|endoftext|> 49407.
Cleaning uses Python's own html.unescape (twice), str.split-free whitespace collapse with re's
Unicode \\s, and str.lower(). The third-party `regex` module (\\p{L}, \\p{N}) is not installed, so
CLIP's split pattern is emulated with `re`: letters = [^\\W\\d_] (Unicode alphanumerics minus
digits and underscore), numbers = \\d, the rest = runs of (non-space, non-word characters or
underscore). That is exact for the test strings (Latin/Greek/Cyrillic/CJK letters, ASCII digits,
punctuation, symbols, emoji).

Usage: reference_clip_tokenizer.py VOCAB_GZ IN_JSON OUT_JSON
IN_JSON: a list of strings. OUT_JSON: a list of id lists (without start/end tokens).
"""
import gzip
import html
import json
import re
import sys


def byte_stand_ins():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    order = printable[:]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            order.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(order, chars)}, order


class Reference:
    def __init__(self, vocab_gz):
        lines = gzip.open(vocab_gz).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
        self.stand_in, order = byte_stand_ins()
        vocab = [self.stand_in[b] for b in order]
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        assert len(vocab) == 49408
        self.ids = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.pattern = re.compile(
            r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+")

    def merge(self, symbols):
        while len(symbols) > 1:
            ranked = [(self.ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            ranked = [(r, i) for r, i in ranked if r is not None]
            if not ranked:
                break
            rank = min(ranked)[0]
            a, b = next((x, y) for x, y in zip(symbols, symbols[1:]) if self.ranks.get((x, y)) == rank)
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            symbols = out
        return symbols

    def encode(self, text):
        text = html.unescape(html.unescape(text)).strip()
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for word in self.pattern.findall(text):
            if word in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.ids[word])
                continue
            symbols = [self.stand_in[b] for b in word.encode("utf-8")]
            symbols[-1] += "</w>"
            ids.extend(self.ids[s] for s in self.merge(symbols))
        return ids


def main():
    vocab_gz, src, dst = sys.argv[1:4]
    reference = Reference(vocab_gz)
    with open(src, encoding="utf-8") as f:
        texts = json.load(f)
    with open(dst, "w", encoding="utf-8") as f:
        json.dump([reference.encode(t) for t in texts], f)


if __name__ == "__main__":
    main()
