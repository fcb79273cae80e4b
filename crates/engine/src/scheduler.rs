//! The engine thread: continuous batching over one llama.cpp context.
//!
//! Each step: take new commands (blocking only when idle), drop cancelled sequences, admit
//! queued requests into free slots, build one batch with the next token of every decoding
//! sequence plus a bounded chunk of prompt tokens, decode it, then sample each sequence that
//! asked for logits. Sequence slot `i` is llama.cpp sequence id `i`; the KV cache is not
//! unified, so every slot owns exactly `context_length` cells and can never run out mid-stream.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::text::TextStream;
use highside_inference::{FinishReason, Usage};

use crate::{backend, nz, Command, Event, Failure, Job, SamplingParams, Stats};

/// llama.cpp's `LLAMA_FLASH_ATTN_TYPE_ENABLED`. Pinned rather than left on "auto": flash
/// attention changes the numerics (greedy near-ties flip), so whether it is on must not depend
/// on llama.cpp's heuristics of the day.
const FLASH_ATTENTION_ENABLED: i32 = 1;

/// Prompt tokens per step when no sequence is decoding (nothing to stall).
const IDLE_PREFILL: u32 = 512;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub threads: i32,
    pub max_sequences: u32,
    pub context_length: u32,
    pub prefill_chunk: u32,
}

struct Sequence {
    slot: usize,
    job: Job,
    sampler: LlamaSampler,
    text: TextStream,
    /// Tokens already in the KV cache.
    n_past: usize,
    /// Token sampled last step, to be decoded this step (None while prefilling).
    next: Option<LlamaToken>,
    generated: u32,
    /// Batch index of this sequence's logits in the current step.
    logits_at: Option<i32>,
    /// Tokens of this sequence in the current step's batch.
    scheduled: usize,
}

pub(crate) fn build_sampler(
    model: &LlamaModel,
    p: &SamplingParams,
    context_length: u32,
) -> Result<LlamaSampler, String> {
    let mut chain = Vec::new();
    // The grammar first: it removes every token the grammar does not allow before sampling.
    if let Some(g) = &p.grammar {
        chain.push(
            LlamaSampler::grammar(model, g, "root")
                .map_err(|e| format!("the output grammar is invalid: {e}"))?,
        );
    }
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            context_length as i32,
            1.0,
            p.frequency_penalty,
            p.presence_penalty,
        ));
    }
    if p.is_greedy() {
        chain.push(LlamaSampler::greedy());
    } else {
        if p.top_k > 0 {
            chain.push(LlamaSampler::top_k(p.top_k.min(i32::MAX as u32) as i32));
        }
        if p.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(p.top_p, 1));
        }
        if p.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(p.min_p, 1));
        }
        chain.push(LlamaSampler::temp(p.temperature));
        // u32::MAX asks llama.cpp for a random seed.
        chain.push(LlamaSampler::dist(p.seed.unwrap_or(u32::MAX)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

pub(crate) fn context_params(s: &Settings, n_batch: u32) -> LlamaContextParams {
    LlamaContextParams::default()
        .with_n_ctx(Some(nz(s.context_length.saturating_mul(s.max_sequences))))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(s.max_sequences)
        .with_n_threads(s.threads)
        .with_n_threads_batch(s.threads)
        .with_kv_unified(false)
        .with_flash_attention_policy(FLASH_ATTENTION_ENABLED)
}

pub(crate) fn run(
    model: &LlamaModel,
    s: Settings,
    stats: &Stats,
    commands: mpsc::Receiver<Command>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let n_batch = IDLE_PREFILL.max(s.prefill_chunk) + s.max_sequences;
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut ctx = match model.new_context(backend, context_params(&s, n_batch)) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let mut sched = Scheduler {
        model,
        s,
        stats,
        batch: LlamaBatch::new(n_batch as usize, 1),
        free_slots: (0..s.max_sequences as usize).rev().collect(),
        queue: VecDeque::new(),
        running: Vec::new(),
    };
    loop {
        // Block only when there is nothing to do; otherwise just drain what has arrived.
        if sched.running.is_empty() && sched.queue.is_empty() {
            match commands.recv() {
                Ok(cmd) => {
                    if !sched.command(cmd) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let mut shutdown = false;
        while let Ok(cmd) = commands.try_recv() {
            if !sched.command(cmd) {
                shutdown = true;
                break;
            }
        }
        if shutdown {
            break;
        }
        sched.step(&mut ctx);
    }
    sched.fail_all(&mut ctx, "the server is shutting down");
}

struct Scheduler<'m> {
    model: &'m LlamaModel,
    s: Settings,
    stats: &'m Stats,
    batch: LlamaBatch<'static>,
    free_slots: Vec<usize>,
    queue: VecDeque<Job>,
    running: Vec<Sequence>,
}

impl Scheduler<'_> {
    /// Returns false on shutdown.
    fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Submit(job) => {
                self.queue.push_back(job);
                self.publish();
                true
            }
            Command::Shutdown => false,
        }
    }

    fn publish(&self) {
        self.stats
            .active
            .store(self.running.len(), Ordering::SeqCst);
        self.stats.queued.store(self.queue.len(), Ordering::SeqCst);
    }

    /// Frees a sequence's slot and KV cells.
    fn release(&mut self, ctx: &mut LlamaContext<'_>, idx: usize) -> Sequence {
        // `remove`, not `swap_remove`: prefill goes in admission order.
        let seq = self.running.remove(idx);
        let _ = ctx.clear_kv_cache_seq(Some(seq.slot as u32), None, None);
        self.free_slots.push(seq.slot);
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        // Publish before the client hears the end, so counters are exact once it has.
        self.publish();
        seq
    }

    fn finish(&mut self, ctx: &mut LlamaContext<'_>, idx: usize, reason: FinishReason) {
        let mut seq = self.release(ctx, idx);
        let rest = seq.text.finish();
        if !rest.is_empty() {
            let _ = seq.job.events.send(Event::Text(rest));
        }
        let _ = seq.job.events.send(Event::Done {
            finish_reason: reason,
            usage: Usage {
                prompt_tokens: seq.job.prompt.len() as u64,
                completion_tokens: u64::from(seq.generated),
            },
        });
    }

    fn fail_all(&mut self, ctx: &mut LlamaContext<'_>, why: &str) {
        while !self.running.is_empty() {
            let seq = self.release(ctx, self.running.len() - 1);
            let _ = seq.job.events.send(Event::Failed(Failure::new(why)));
        }
        for job in self.queue.drain(..) {
            let _ = job.events.send(Event::Failed(Failure::new(why)));
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        self.publish();
    }

    fn step(&mut self, ctx: &mut LlamaContext<'_>) {
        // Clients that went away: free their sequences before spending compute on them.
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].job.events.is_closed() {
                self.release(ctx, i);
            } else {
                i += 1;
            }
        }
        let before = self.queue.len();
        self.queue.retain(|j| !j.events.is_closed());
        let dropped = before - self.queue.len();
        self.stats.in_flight.fetch_sub(dropped, Ordering::SeqCst);

        while !self.free_slots.is_empty() && !self.queue.is_empty() {
            // The lowest free slot keeps active sequence ids contiguous (see the batch layout).
            let lowest = self
                .free_slots
                .iter()
                .enumerate()
                .min_by_key(|&(_, s)| *s)
                .map(|(i, _)| i);
            let (Some(slot), Some(job)) = (
                lowest.map(|i| self.free_slots.swap_remove(i)),
                self.queue.pop_front(),
            ) else {
                break;
            };
            let sampler = match build_sampler(self.model, &job.params, self.s.context_length) {
                Ok(s) => s,
                Err(why) => {
                    let _ = job.events.send(Event::Failed(Failure::new(why)));
                    self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                    self.free_slots.push(slot);
                    continue;
                }
            };
            let text = TextStream::new(job.params.stop.clone());
            self.running.push(Sequence {
                slot,
                job,
                sampler,
                text,
                n_past: 0,
                next: None,
                generated: 0,
                logits_at: None,
                scheduled: 0,
            });
        }
        self.publish();
        if self.running.is_empty() {
            return;
        }

        // First decide who prefills this step. A prompt is always prefilled in the same
        // chunks, [0, C), [C, 2C), ..., whatever else is running: llama.cpp's numerics depend
        // on how tokens are grouped, and a sequence must give the same tokens alone as under
        // load. While others decode, one chunk per step keeps their streams moving; when idle,
        // several prompts share a step. Oldest prompt first.
        let any_decoding = self.running.iter().any(|q| q.next.is_some());
        let chunk = self.s.prefill_chunk as usize;
        let mut budget = if any_decoding {
            chunk
        } else {
            IDLE_PREFILL.max(self.s.prefill_chunk) as usize
        };
        for seq in &mut self.running {
            seq.logits_at = None;
            seq.scheduled = 0;
            if seq.next.is_some() {
                seq.scheduled = 1;
            } else if budget > 0 && seq.n_past < seq.job.prompt.len() {
                let end = (seq.n_past + chunk).min(seq.job.prompt.len());
                if end - seq.n_past > budget {
                    budget = 0;
                } else {
                    seq.scheduled = end - seq.n_past;
                    budget -= seq.scheduled;
                }
            }
        }
        // Then lay the batch out in sequence-id order. With a per-sequence KV cache llama.cpp
        // only groups consecutive, increasing sequence ids into one micro-batch; any other
        // order splits a step into many small graphs (measured: ~2x slower at 32 streams).
        let mut order: Vec<usize> = (0..self.running.len())
            .filter(|&i| self.running[i].scheduled > 0)
            .collect();
        order.sort_unstable_by_key(|&i| self.running[i].slot);
        self.batch.clear();
        let mut n = 0i32;
        for i in order {
            let seq = &mut self.running[i];
            if let Some(tok) = seq.next {
                // Capacity is max_sequences + the prefill budget; add cannot fail.
                let _ = self
                    .batch
                    .add(tok, seq.n_past as i32, &[seq.slot as i32], true);
                seq.logits_at = Some(n);
                n += 1;
                continue;
            }
            let end = seq.n_past + seq.scheduled;
            for (pos, &tok) in seq.job.prompt.iter().enumerate().take(end).skip(seq.n_past) {
                let last = pos + 1 == seq.job.prompt.len();
                let _ = self.batch.add(tok, pos as i32, &[seq.slot as i32], last);
                if last {
                    seq.logits_at = Some(n);
                }
                n += 1;
            }
        }
        self.stats.last_batch.store(n as usize, Ordering::SeqCst);

        if let Err(e) = ctx.decode(&mut self.batch) {
            tracing::error!(error = %e, batch = n, "llama.cpp decode failed");
            // The state of every sequence in this batch is unknown: fail them, keep serving.
            while !self.running.is_empty() {
                let seq = self.release(ctx, self.running.len() - 1);
                let _ = seq.job.events.send(Event::Failed(Failure::new(format!(
                    "the engine failed to decode: {e}"
                ))));
            }
            self.publish();
            return;
        }

        for seq in &mut self.running {
            seq.n_past += seq.scheduled;
            seq.next = None;
        }

        let vocab = self.model.vocab();
        let mut i = 0;
        while i < self.running.len() {
            let Some(at) = self.running[i].logits_at else {
                i += 1;
                continue;
            };
            let seq = &mut self.running[i];
            let token = seq.sampler.sample(ctx, at);
            if vocab.is_eog(token) {
                self.finish(ctx, i, FinishReason::Stop);
                continue;
            }
            seq.generated += 1;
            let piece = vocab.token_to_piece(token, false, None);
            let released = seq.text.push(&piece);
            let _ = seq.job.events.send(Event::Token {
                id: token.0,
                text: released.text,
            });
            let context_full = seq.n_past + 1 >= self.s.context_length as usize;
            if released.stopped {
                self.finish(ctx, i, FinishReason::Stop);
            } else if seq.generated >= seq.job.params.max_tokens || context_full {
                self.finish(ctx, i, FinishReason::Length);
            } else {
                seq.next = Some(token);
                i += 1;
            }
        }
        self.publish();
    }
}
