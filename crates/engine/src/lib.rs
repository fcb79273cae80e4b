//! The embedded inference engine: llama.cpp (through `llama-cpp-2`) driven by a
//! continuous-batching scheduler.
//!
//! One [`Engine`] per loaded model owns one OS thread, and that thread alone owns the llama.cpp
//! context (KV cache and all). Requests reach it over a channel; between decode steps it admits
//! waiting requests, prefills their prompts in chunks so running streams keep moving, decodes
//! every active sequence in one batch, samples each with its own sampler and sends text back
//! over a per-request channel. A request whose receiver is dropped (client gone) is cancelled
//! and its KV cache freed at the next step.
//!
//! This crate knows nothing about HTTP, chat templates or users: it takes token ids and
//! sampling parameters and returns text.
#![deny(unsafe_code)]

mod raw;
mod scheduler;
mod text;

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc as tmpsc;

/// What a request's stream carries (the neutral vocabulary's, shared by every backend).
pub use highside_inference::{Event, Failure};
pub use highside_inference::{ParamError, SamplingParams, MAX_STOP_STRINGS};
pub use raw::{raw_batched_decode, RawBenchResult};

/// Engine sizing, taken from the server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Decode threads; 0 means all available cores.
    pub threads: u32,
    /// Sequences decoded together.
    pub max_sequences: u32,
    /// Context window per sequence in tokens (clamped to the model's training context).
    pub context_length: u32,
    /// Requests that may wait for a free sequence.
    pub queue_depth: u32,
    /// Prompt tokens prefilled per step while other sequences decode.
    pub prefill_chunk: u32,
}

/// Facts about a loaded model that request handling needs.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// Context window per sequence actually in force.
    pub context_length: u32,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    /// Vocabulary size.
    pub n_vocab: u32,
    /// Text of the beginning-of-sequence token, for chat templates.
    pub bos_text: String,
    /// Text of the end-of-sequence token, for chat templates.
    pub eos_text: String,
    /// Whether tokenization should prepend BOS.
    pub add_bos: bool,
    /// Texts of the control tokens (`<|im_start|>`, ...): client text containing one could
    /// forge conversation structure once the rendered prompt is tokenized.
    pub control_texts: Vec<String>,
}

/// Errors from loading a model or submitting work.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp's backend could not start.
    #[error("cannot initialise llama.cpp: {0}")]
    Backend(String),
    /// The model file could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Load {
        /// The model file.
        path: String,
        /// What llama.cpp said.
        reason: String,
    },
    /// Every sequence is busy and the queue is full.
    #[error("the engine is at capacity ({capacity} requests running or queued); retry later")]
    Overloaded {
        /// Running plus queued requests allowed.
        capacity: usize,
    },
    /// The prompt plus requested tokens do not fit the context window.
    #[error("this request needs {needed} tokens ({prompt} in the prompt + {max_tokens} to generate) but the model's context window is {context} tokens")]
    ContextOverflow {
        /// Prompt tokens.
        prompt: u32,
        /// Requested completion tokens.
        max_tokens: u32,
        /// Their sum.
        needed: u64,
        /// The context window.
        context: u32,
    },
    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A sampling parameter is out of range.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The engine thread has stopped.
    #[error("the engine has shut down")]
    Stopped,
}

/// Live counters, read by health checks, tests and (later) metrics.
#[derive(Debug, Default)]
pub struct Stats {
    active: AtomicUsize,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
    last_batch: AtomicUsize,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Sequences holding KV cache now.
    pub active_sequences: usize,
    /// Requests waiting for a sequence slot.
    pub queued: usize,
    /// Tokens in the last decoded batch.
    pub last_batch_tokens: usize,
}

pub(crate) struct Job {
    pub(crate) prompt: Vec<LlamaToken>,
    pub(crate) params: SamplingParams,
    pub(crate) events: tmpsc::UnboundedSender<Event>,
}

pub(crate) enum Command {
    Submit(Job),
    Shutdown,
}

/// A loaded model with its engine thread.
pub struct Engine {
    model: Arc<LlamaModel>,
    info: ModelInfo,
    stats: Arc<Stats>,
    capacity: usize,
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// llama.cpp's backend may be initialised once per process.
pub(crate) fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

pub(crate) fn resolve_threads(threads: u32) -> i32 {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    } else {
        threads
    };
    n.min(i32::MAX as u32) as i32
}

pub(crate) fn load_model(path: &Path) -> Result<LlamaModel, EngineError> {
    let backend = backend()?;
    LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| {
        EngineError::Load {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    })
}

impl Engine {
    /// Loads a model file (already validated by the catalog) and starts its engine thread.
    pub fn load(path: &Path, config: &EngineConfig) -> Result<Self, EngineError> {
        let model = Arc::new(load_model(path)?);
        let context_length = config.context_length.min(model.n_ctx_train().max(1));
        let vocab = model.vocab();
        let piece = |t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
        let info = ModelInfo {
            context_length,
            n_ctx_train: model.n_ctx_train(),
            n_vocab: model.n_vocab().max(0) as u32,
            bos_text: piece(vocab.bos()),
            eos_text: piece(vocab.eos()),
            add_bos: vocab.should_add_bos(),
            control_texts: vocab
                .tokens()
                .filter(|&t| vocab.is_control(t))
                .map(piece)
                .filter(|t| !t.is_empty())
                .collect(),
        };
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let settings = scheduler::Settings {
            threads: resolve_threads(config.threads),
            max_sequences: config.max_sequences.max(1),
            context_length,
            prefill_chunk: config.prefill_chunk.max(1),
        };
        let thread = {
            let model = Arc::clone(&model);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("highside-engine".into())
                .spawn(move || scheduler::run(&model, settings, &stats, rx, ready_tx))
                .map_err(|e| EngineError::Backend(e.to_string()))?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                let _ = thread.join();
                return Err(EngineError::Load {
                    path: path.display().to_string(),
                    reason,
                });
            }
            Err(_) => {
                let _ = thread.join();
                return Err(EngineError::Stopped);
            }
        }
        let capacity = config.max_sequences.max(1) as usize + config.queue_depth as usize;
        Ok(Self {
            model,
            info,
            stats,
            capacity,
            commands: tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// What request handling needs to know about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Tokenizes text; `special` lets control-token text (as written by a chat template) become
    /// control tokens, which raw client text must not do.
    pub fn tokenize(&self, text: &str, special: bool) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), self.info.add_bos, special)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// The bytes a token stands for.
    pub fn token_bytes(&self, token: i32) -> Vec<u8> {
        self.model
            .vocab()
            .token_to_piece(LlamaToken(token), false, None)
    }

    /// Checks a request against the context window and parameter ranges, without queueing it.
    pub fn check(&self, prompt_tokens: usize, params: &SamplingParams) -> Result<(), EngineError> {
        params.validate()?;
        if prompt_tokens == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        let needed = prompt_tokens as u64 + u64::from(params.max_tokens);
        if needed > u64::from(self.info.context_length) {
            return Err(EngineError::ContextOverflow {
                prompt: prompt_tokens.min(u32::MAX as usize) as u32,
                max_tokens: params.max_tokens,
                needed,
                context: self.info.context_length,
            });
        }
        Ok(())
    }

    /// Queues a generation; events arrive on the returned receiver. Dropping the receiver
    /// cancels the request and frees its sequence.
    pub fn submit(
        &self,
        prompt: Vec<i32>,
        params: SamplingParams,
    ) -> Result<tmpsc::UnboundedReceiver<Event>, EngineError> {
        self.check(prompt.len(), &params)?;
        // Reserve a place first so that concurrent submitters cannot overshoot the capacity.
        let before = self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
        if before >= self.capacity {
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Overloaded {
                capacity: self.capacity,
            });
        }
        let (events, rx) = tmpsc::unbounded_channel();
        let job = Job {
            prompt: prompt.into_iter().map(LlamaToken).collect(),
            params,
            events,
        };
        if self.commands.send(Command::Submit(job)).is_err() {
            self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Stopped);
        }
        Ok(rx)
    }

    /// Live counters.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            active_sequences: self.stats.active.load(Ordering::SeqCst),
            queued: self.stats.queued.load(Ordering::SeqCst),
            last_batch_tokens: self.stats.last_batch.load(Ordering::SeqCst),
        }
    }

    /// Requests running or queued (what the capacity limit counts).
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::SeqCst)
    }

    /// Asks the engine thread to fail every running and queued request and stop; returns at
    /// once. New submissions fail with [`EngineError::Stopped`] afterwards.
    pub fn begin_shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    /// Stops the engine thread and waits for it.
    pub fn shutdown(&self) {
        self.begin_shutdown();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = handle {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A non-zero u32, clamping 0 to 1 (llama.cpp context sizes must not be 0).
pub(crate) fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}
