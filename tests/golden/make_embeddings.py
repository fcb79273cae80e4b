"""Reference embeddings for all-MiniLM-L6-v2, computed without any ML library: a WordPiece
tokenizer and the BERT forward pass written out in numpy from the published architecture,
reading model.safetensors directly; mean pooling over tokens and L2 normalization, as
sentence-transformers does. Writes tests/golden/minilm_embeddings.json, which
crates/embed/tests/golden.rs compares Highside's encoder against.

Usage: python3 tests/golden/make_embeddings.py "$(scripts/fetch-embedding-model)"
"""

import json
import math
import struct
import sys
import unicodedata
from pathlib import Path

import numpy as np

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaped above a sleepy hound.",
    "Quarterly budget figures for the agency are due on Friday.",
    "Hello!",
    "Classified networks run their own AI services, isolated from the internet.",
]


def load(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(meta["shape"])
    return out


def wordpiece(text: str, vocab: dict) -> list:
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words, cur = [], ""
    for c in text:
        if c.isspace():
            if cur:
                words.append(cur)
            cur = ""
        elif unicodedata.category(c).startswith("P") or (33 <= ord(c) <= 47) or (58 <= ord(c) <= 64) \
                or (91 <= ord(c) <= 96) or (123 <= ord(c) <= 126):
            if cur:
                words.append(cur)
            words.append(c)
            cur = ""
        else:
            cur += c
    if cur:
        words.append(cur)
    ids = [vocab["[CLS]"]]
    for w in words:
        start, pieces = 0, []
        while start < len(w):
            end = len(w)
            while end > start:
                piece = w[start:end] if start == 0 else "##" + w[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            start = end
        ids.extend(pieces)
    ids.append(vocab["[SEP]"])
    return ids


def layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


ERF = np.vectorize(math.erf)


def embed(ids: list, w: dict, heads: int = 12, layers: int = 6) -> np.ndarray:
    x = w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
    x = x + w["embeddings.position_embeddings.weight"][: len(ids)]
    x = x + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    d = x.shape[1] // heads
    for i in range(layers):
        p = f"encoder.layer.{i}."
        lin = lambda t, name: t @ w[p + name + ".weight"].T.astype(np.float64) + w[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(len(ids), heads, d).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(len(ids), heads, d).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(len(ids), heads, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(len(ids), heads * d)
        x = layer_norm(lin(ctx, "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + ERF(h / math.sqrt(2.0)))
        x = layer_norm(lin(h, "output.dense") + x,
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    mean = x.mean(0)
    return mean / np.linalg.norm(mean)


def main():
    model = Path(sys.argv[1])
    vocab = json.loads((model / "tokenizer.json").read_text())["model"]["vocab"]
    weights = load(model / "model.safetensors")
    out = []
    for s in SENTENCES:
        ids = wordpiece(s, vocab)
        out.append({"text": s, "ids": ids, "embedding": [round(float(v), 7) for v in embed(ids, weights)]})
    dest = Path(__file__).with_name("minilm_embeddings.json")
    dest.write_text(json.dumps(out) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
