#!/usr/bin/env python3
"""Generate golden greedy-decoding tokens for the demo model with an independent
implementation (llama-cpp-python), for comparison against Highside's engine.

Usage:  python3 tests/golden/make_golden.py [MODEL_PATH]

MODEL_PATH defaults to $HIGHSIDE_TEST_MODEL, else the last stdout line of
scripts/fetch-model. Writes tests/golden/smollm2_greedy.json.

Requires: pip install llama-cpp-python jinja2 numpy
(build it with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
so its SIMD paths match Highside's x86-64-v3 build).
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import jinja2.sandbox
import llama_cpp
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "smollm2_greedy.json"
MAX_TOKENS = 32

CASES = [
    [
        {"role": "user", "content": "Write a short story about a lighthouse keeper."},
    ],
    [
        {"role": "system", "content": "You are a knowledgeable science teacher who explains things in detail."},
        {"role": "user", "content": "Explain how photosynthesis works."},
    ],
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "Tell me about its history and famous landmarks."},
    ],
]


def model_path() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    env = os.environ.get("HIGHSIDE_TEST_MODEL")
    if env:
        return Path(env)
    out = subprocess.run(
        [str(REPO / "scripts" / "fetch-model")], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def token_text(llm, tok: int) -> str:
    return llm.detokenize([tok], special=True).decode("utf-8", errors="replace")


def is_eog(llm, tok: int) -> bool:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return bool(llama_cpp.llama_vocab_is_eog(vocab, tok))


def greedy(llm, prompt_tokens):
    """Pure argmax decoding over the raw logits: no penalties, no sampler chain."""
    llm.reset()
    llm.eval(prompt_tokens)
    out, margins = [], []
    for _ in range(MAX_TOKENS):
        # llama-cpp-python >= 0.3 no longer copies logits into llm.scores unless
        # logits_all=True, so read the last position's logits from llama.cpp directly.
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()
        assert np.isfinite(logits).all() and logits.std() > 0, "bad logits"
        tok = int(np.argmax(logits))
        top2 = np.partition(logits, -2)[-2:]
        margins.append(round(float(top2[1] - top2[0]), 4))
        out.append(tok)
        if is_eog(llm, tok):
            break
        llm.eval([tok])
    return out, margins


def main():
    path = model_path()
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=2048, n_threads=2, verbose=False, logits_all=False
    )
    # llama-cpp-python defaults to flash attention off, while llama.cpp's own default context
    # params (flash_attn_type AUTO, which enables it on CPU) are what Highside's engine gets.
    # The two differ numerically enough to flip near-tied argmaxes, so record both.
    llm_fa = llama_cpp.Llama(
        model_path=str(path), n_ctx=2048, n_threads=2, verbose=False, logits_all=False,
        flash_attn=True,
    )
    md = llm.metadata
    template_src = md["tokenizer.chat_template"]

    def tok_str(key):
        if key in md:
            return token_text(llm, int(md[key]))
        return ""

    bos_token = tok_str("tokenizer.ggml.bos_token_id")
    eos_token = tok_str("tokenizer.ggml.eos_token_id")
    add_bos = md.get("tokenizer.ggml.add_bos_token", "false").lower() == "true"

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False)
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(template_src)
    # HF transformers renders with trim_blocks/lstrip_blocks=True; note whether it matters here.
    hf_env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    hf_env.globals["raise_exception"] = raise_exception
    hf_template = hf_env.from_string(template_src)

    cases = []
    for messages in CASES:
        kw = dict(messages=messages, add_generation_prompt=True,
                  bos_token=bos_token, eos_token=eos_token)
        prompt = template.render(**kw)
        if hf_template.render(**kw) != prompt:
            print("note: trim_blocks/lstrip_blocks change the rendering", file=sys.stderr)
        # The template renders no BOS; follow tokenizer.ggml.add_bos_token.
        prompt_tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if add_bos:
            prompt_tokens = [llm.token_bos()] + prompt_tokens
        completion, margins = greedy(llm, prompt_tokens)
        text = llm.detokenize(completion).decode("utf-8", errors="replace")
        completion_fa, margins_fa = greedy(llm_fa, prompt_tokens)
        text_fa = llm_fa.detokenize(completion_fa).decode("utf-8", errors="replace")
        cases.append({
            "messages": messages,
            "prompt": prompt,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "completion_text": text,
            "completion_logit_margins": margins,
            "completion_tokens_flash_attn": completion_fa,
            "completion_text_flash_attn": text_fa,
            "completion_logit_margins_flash_attn": margins_fa,
        })
        print(f"--- {messages[-1]['content']!r}\n{text!r}\nflash_attn: {text_fa!r}",
              file=sys.stderr)

    doc = {
        "model": path.name,
        "model_sha256": sha256(path),
        "generator": f"llama-cpp-python {llama_cpp.__version__}",
        "decoding": f"greedy argmax over raw logits, no penalties, max {MAX_TOKENS} tokens, "
                    "stop only at an end-of-generation token (included as last element)",
        "template_rendering": "jinja2 ImmutableSandboxedEnvironment(trim_blocks=False, "
                              "lstrip_blocks=False), add_generation_prompt=True",
        "add_bos": add_bos,
        "bos_token_id": llm.token_bos(),
        "eos_token_id": llm.token_eos(),
        "n_ctx": 2048,
        "n_batch": llm.n_batch,
        "flash_attn": "completion_* fields: off (llama-cpp-python default); "
                      "*_flash_attn fields: on (llama.cpp default AUTO resolves to on for CPU)",
        "evaluation": "prompt in one batch, then one token per decode call",
        "note": "completion_logit_margins[i] = top1 - top2 logit at step i; steps with a "
                "small margin (< ~0.3) can flip under a different kernel path or batching "
                "(teacher-forced batch evaluation of the same sequence already flips some)",
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
