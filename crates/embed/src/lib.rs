//! The embedded sentence encoder: a BERT-family model (the demo is all-MiniLM-L6-v2) loaded
//! from `config.json`, `model.safetensors` and `tokenizer.json` (the encoder is ours,
//! `bert.rs`, on candle's tensors), mean pooling over the attention mask, then L2
//! normalization, as sentence-transformers does. One thread owns
//! the model and batches concurrent requests into one forward pass; padding is masked, so an
//! input's embedding does not depend on what it was batched with. Inputs are never
//! truncated: one longer than the model's positions is an error.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

mod bert;

use bert::{Bert, Config, DTYPE};

/// Files an embedding model directory holds.
pub const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
/// Most inputs one forward pass takes.
const MAX_BATCH: usize = 32;

/// Why loading or encoding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The files are not a BERT model candle can load.
    #[error("not a loadable BERT embedding model: {0}")]
    Model(String),
    /// An input has more tokens than the model has positions.
    #[error("input {index} has {tokens} tokens; this model takes at most {max}")]
    TooLong {
        /// Which input.
        index: usize,
        /// Its tokens.
        tokens: usize,
        /// The model's limit.
        max: usize,
    },
    /// An input is empty.
    #[error("input {0} is empty")]
    Empty(usize),
    /// The encoder thread is gone.
    #[error("the encoder stopped")]
    Stopped,
}

fn model_err(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model(e.to_string())
}

/// What an encoder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Embedding dimensions.
    pub dimensions: usize,
    /// Most tokens per input.
    pub max_tokens: usize,
    /// Parameters in the weights.
    pub parameters: u64,
}

/// The model and its device.
struct Encoder {
    model: Bert,
    device: Device,
}

impl Encoder {
    /// Embeds token-id sequences as one padded batch.
    fn encode(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let len = inputs.iter().map(Vec::len).max().unwrap_or(0);
        let n = inputs.len();
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (i, input) in inputs.iter().enumerate() {
            ids[i * len..i * len + input.len()].copy_from_slice(input);
            mask[i * len..i * len + input.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device).map_err(model_err)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device).map_err(model_err)?;
        let types = ids.zeros_like().map_err(model_err)?;
        let hidden = self.model.forward(&ids, &types, &mask).map_err(model_err)?;
        // Mean over the real tokens only, then unit length.
        let m = mask
            .to_dtype(DTYPE)
            .and_then(|m| m.unsqueeze(2))
            .map_err(model_err)?;
        let summed = hidden
            .broadcast_mul(&m)
            .and_then(|h| h.sum(1))
            .map_err(model_err)?;
        let counts = m.sum(1).map_err(model_err)?;
        let mean = summed.broadcast_div(&counts).map_err(model_err)?;
        let norm = mean
            .sqr()
            .and_then(|s| s.sum_keepdim(1))
            .and_then(|s| s.sqrt())
            .and_then(|s| s.clamp(1e-12, f64::MAX))
            .map_err(model_err)?;
        mean.broadcast_div(&norm)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(model_err)
    }
}

struct Job {
    inputs: Vec<Vec<u32>>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

/// A loaded embedding model: tokenizes on the caller's thread, encodes on its own.
pub struct Embedder {
    tokenizer: Arc<Tokenizer>,
    info: Info,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, EmbedError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| EmbedError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Checks that `dir` holds a loadable model and returns what it is, without keeping it.
pub fn inspect(dir: &Path) -> Result<Info, EmbedError> {
    let (_, _, info) = load(dir)?;
    Ok(info)
}

fn load(dir: &Path) -> Result<(Bert, Tokenizer, Info), EmbedError> {
    let config: Config = serde_json::from_slice(&read(dir, "config.json")?)
        .map_err(|e| EmbedError::Model(format!("config.json: {e}")))?;
    let mut tokenizer = Tokenizer::from_bytes(read(dir, "tokenizer.json")?)
        .map_err(|e| EmbedError::Model(format!("tokenizer.json: {e}")))?;
    // The file may ask for truncation and padding; Highside never truncates and pads itself.
    tokenizer
        .with_truncation(None)
        .map_err(|e| EmbedError::Model(format!("tokenizer.json: {e}")))?;
    tokenizer.with_padding(None);
    let weights = read(dir, "model.safetensors")?;
    let device = Device::Cpu;
    let parameters = safetensors_parameters(&weights)?;
    // Buffered, not memory-mapped: the crate stays free of unsafe code.
    let vb = VarBuilder::from_buffered_safetensors(weights, DTYPE, &device)
        .map_err(|e| EmbedError::Model(format!("model.safetensors: {e}")))?;
    let model = Bert::load(vb, &config)
        .map_err(|e| EmbedError::Model(format!("model.safetensors: {e}")))?;
    let info = Info {
        dimensions: config.hidden_size,
        max_tokens: config.max_position_embeddings,
        parameters,
    };
    Ok((model, tokenizer, info))
}

fn safetensors_parameters(bytes: &[u8]) -> Result<u64, EmbedError> {
    let st = candle_core::safetensors::SliceSafetensors::new(bytes)
        .map_err(|e| EmbedError::Model(format!("model.safetensors: {e}")))?;
    Ok(st
        .tensors()
        .iter()
        .map(|(_, v)| v.shape().iter().product::<usize>() as u64)
        .sum())
}

impl Embedder {
    /// Loads the model in `dir` and starts its encoder thread.
    pub fn load(dir: &Path, name: &str) -> Result<Self, EmbedError> {
        let (model, tokenizer, info) = load(dir)?;
        let encoder = Encoder {
            model,
            device: Device::Cpu,
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("embed-{name}"))
            .spawn(move || run(encoder, rx))
            .map_err(|e| EmbedError::Model(format!("cannot start the encoder thread: {e}")))?;
        Ok(Self {
            tokenizer: Arc::new(tokenizer),
            info,
            jobs,
        })
    }

    /// What the model is.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// Token ids of each input, with the model's special tokens; refuses empty inputs and
    /// inputs longer than the model takes.
    pub fn tokenize(&self, inputs: &[String]) -> Result<Vec<Vec<u32>>, EmbedError> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                if text.is_empty() {
                    return Err(EmbedError::Empty(i));
                }
                let enc = self
                    .tokenizer
                    .encode(text.as_str(), true)
                    .map_err(model_err)?;
                let ids = enc.get_ids().to_vec();
                if ids.len() > self.info.max_tokens {
                    return Err(EmbedError::TooLong {
                        index: i,
                        tokens: ids.len(),
                        max: self.info.max_tokens,
                    });
                }
                Ok(ids)
            })
            .collect()
    }

    /// The embeddings of tokenized inputs, in order.
    pub async fn embed(&self, inputs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { inputs, reply })
            .map_err(|_| EmbedError::Stopped)?;
        rx.await.map_err(|_| EmbedError::Stopped)?
    }

    /// The same, blocking the calling thread.
    pub fn embed_blocking(&self, inputs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job { inputs, reply })
            .map_err(|_| EmbedError::Stopped)?;
        rx.blocking_recv().map_err(|_| EmbedError::Stopped)?
    }
}

/// The encoder thread: takes every waiting job, encodes their inputs in batches of at most
/// [`MAX_BATCH`] (sorted by length, so padding stays small), and answers each job.
fn run(encoder: Encoder, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        // (job, input) pairs, shortest first.
        let mut order: Vec<(usize, usize)> = jobs
            .iter()
            .enumerate()
            .flat_map(|(j, job)| (0..job.inputs.len()).map(move |i| (j, i)))
            .collect();
        order.sort_by_key(|&(j, i)| jobs[j].inputs[i].len());
        let mut results: Vec<Vec<Option<Vec<f32>>>> =
            jobs.iter().map(|j| vec![None; j.inputs.len()]).collect();
        // A failed pass fails only the jobs that had an input in it.
        let mut failed: Vec<Option<String>> = vec![None; jobs.len()];
        for chunk in order.chunks(MAX_BATCH) {
            let batch: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&(j, i)| jobs[j].inputs[i].clone())
                .collect();
            match encoder.encode(&batch) {
                Ok(vectors) => {
                    for (&(j, i), v) in chunk.iter().zip(vectors) {
                        results[j][i] = Some(v);
                    }
                }
                Err(e) => {
                    for &(j, _) in chunk {
                        failed[j] = Some(e.to_string());
                    }
                }
            }
        }
        for ((job, vectors), failure) in jobs.into_iter().zip(results).zip(failed) {
            let answer = match failure {
                Some(why) => Err(EmbedError::Model(why)),
                None => Ok(vectors.into_iter().map(Option::unwrap_or_default).collect()),
            };
            let _ = job.reply.send(answer);
        }
    }
}
