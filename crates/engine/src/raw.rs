//! The raw batched decode loop used as the benchmark baseline: llama.cpp with no scheduler,
//! no channels and no HTTP, greedy-decoding `n_seq` copies of a prompt in one batch per step.

use std::path::Path;
use std::time::Instant;

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::scheduler::{context_params, Settings};
use crate::{backend, load_model, resolve_threads, EngineError};

/// Throughput of the raw loop.
#[derive(Debug, Clone, Copy)]
pub struct RawBenchResult {
    /// Sequences decoded together.
    pub sequences: u32,
    /// Tokens generated over all sequences.
    pub generated: u64,
    /// Aggregate generated tokens per second during the decode phase.
    pub decode_tok_per_s: f64,
    /// Generated tokens per second including the (batched) prefill of every prompt: the
    /// figure a server facing the same load could at best reach.
    pub end_to_end_tok_per_s: f64,
}

/// Prefills `prompt` into `n_seq` sequences, then decodes `steps` greedy tokens for each.
pub fn raw_batched_decode(
    path: &Path,
    threads: u32,
    n_seq: u32,
    prompt: &[i32],
    steps: u32,
) -> Result<RawBenchResult, EngineError> {
    let model = load_model(path)?;
    let n_seq = n_seq.max(1);
    let settings = Settings {
        threads: resolve_threads(threads),
        max_sequences: n_seq,
        context_length: (prompt.len() as u32 + steps + 8).next_multiple_of(256),
        prefill_chunk: 512,
    };
    // Every prompt is prefilled in one batch: the cheapest schedule there is.
    let n_batch = (prompt.len() as u32 * n_seq).max(n_seq) + n_seq;
    let mut ctx = model
        .new_context(backend()?, context_params(&settings, n_batch))
        .map_err(|e| EngineError::Load {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let mut batch = LlamaBatch::new(n_batch as usize, 1);
    let decode_err = |e: llama_cpp_2::DecodeError| EngineError::Load {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut samplers: Vec<LlamaSampler> = (0..n_seq).map(|_| LlamaSampler::greedy()).collect();
    let mut next = vec![LlamaToken(0); n_seq as usize];
    let prefill_start = Instant::now();
    batch.clear();
    let mut last = Vec::new();
    for s in 0..n_seq {
        for (i, &t) in prompt.iter().enumerate() {
            let _ = batch.add(LlamaToken(t), i as i32, &[s as i32], i + 1 == prompt.len());
        }
        last.push(batch.n_tokens() - 1);
    }
    ctx.decode(&mut batch).map_err(decode_err)?;
    for s in 0..n_seq as usize {
        next[s] = samplers[s].sample(&ctx, last[s]);
    }
    let prefill_secs = prefill_start.elapsed().as_secs_f64();
    let start = Instant::now();
    for step in 0..steps {
        batch.clear();
        for s in 0..n_seq {
            let pos = prompt.len() as i32 + step as i32;
            let _ = batch.add(next[s as usize], pos, &[s as i32], true);
        }
        ctx.decode(&mut batch).map_err(decode_err)?;
        for s in 0..n_seq {
            next[s as usize] = samplers[s as usize].sample(&ctx, s as i32);
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let generated = u64::from(n_seq) * u64::from(steps);
    Ok(RawBenchResult {
        sequences: n_seq,
        generated,
        decode_tok_per_s: generated as f64 / secs,
        end_to_end_tok_per_s: generated as f64 / (secs + prefill_secs),
    })
}
