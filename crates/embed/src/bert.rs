//! A BERT encoder (the architecture of all-MiniLM and its kin) on candle's tensors and layers:
//! embeddings, then `num_hidden_layers` of self-attention and feed-forward, each closed by a
//! residual LayerNorm. Only what sentence embeddings need: absolute positions, one token
//! type, no pooler head. Our own, so the build carries no model zoo for one architecture.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The weights' and activations' type.
pub const DTYPE: DType = DType::F32;

/// The feed-forward activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// GELU with the error function, as `transformers`' `gelu`.
    Gelu,
    /// GELU's tanh approximation.
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluApproximate,
    /// ReLU.
    Relu,
}

/// `config.json`: the fields the encoder reads (others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of every hidden state (the embedding's dimensions).
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// The feed-forward activation.
    pub hidden_act: Activation,
    /// Positions the model has (the most tokens per input).
    pub max_position_embeddings: usize,
    /// Token types (segments).
    #[serde(default = "one")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is served.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn one() -> usize {
    1
}

fn eps() -> f64 {
    1e-12
}

struct Embeddings {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        Ok(Self {
            words: embedding(c.vocab_size, c.hidden_size, vb.pp("word_embeddings"))?,
            positions: embedding(
                c.max_position_embeddings,
                c.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            types: embedding(
                c.type_vocab_size,
                c.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor, types: &Tensor) -> Result<Tensor> {
        let len = ids.dim(1)?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?.unsqueeze(0)?;
        let x = self
            .words
            .forward(ids)?
            .add(&self.types.forward(types)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        self.norm.forward(&x)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_norm: LayerNorm,
    heads: usize,
    activation: Activation,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        let h = c.hidden_size;
        let attention = vb.pp("attention");
        let this = attention.pp("self");
        Ok(Self {
            query: linear(h, h, this.pp("query"))?,
            key: linear(h, h, this.pp("key"))?,
            value: linear(h, h, this.pp("value"))?,
            attention_out: linear(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: layer_norm(
                h,
                c.layer_norm_eps,
                attention.pp("output").pp("LayerNorm"),
            )?,
            intermediate: linear(h, c.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            out: linear(c.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: layer_norm(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: c.num_attention_heads,
            activation: c.hidden_act,
        })
    }

    /// `(batch, len, hidden)` → `(batch, heads, len, head)`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, len, hidden) = x.dims3()?;
        x.reshape((b, len, self.heads, hidden / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, len, hidden) = x.dims3()?;
        let q = self.split(&self.query.forward(x)?)?;
        let k = self.split(&self.key.forward(x)?)?;
        let v = self.split(&self.value.forward(x)?)?;
        let scale = 1.0 / ((hidden / self.heads) as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, len, hidden))?;
        let attended = self
            .attention_norm
            .forward(&self.attention_out.forward(&context)?.add(x)?)?;
        let inner = self.intermediate.forward(&attended)?;
        let inner = match self.activation {
            Activation::Gelu => inner.gelu_erf()?,
            Activation::GeluApproximate => inner.gelu()?,
            Activation::Relu => inner.relu()?,
        };
        self.out_norm
            .forward(&self.out.forward(&inner)?.add(&attended)?)
    }
}

/// A loaded encoder.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl Bert {
    /// Loads the weights, named as `transformers` saves a `BertModel` (with or without a
    /// `bert.` prefix).
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        if c.position_embedding_type
            .as_deref()
            .is_some_and(|t| t != "absolute")
        {
            candle_core::bail!("only absolute position embeddings are supported");
        }
        if c.hidden_size == 0 || !(c.layer_norm_eps > 0.0 && c.layer_norm_eps.is_finite()) {
            candle_core::bail!("hidden_size and layer_norm_eps must be positive");
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!("hidden_size must be a multiple of num_attention_heads");
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let encoder = vb.pp("encoder").pp("layer");
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), c)?,
            layers: (0..c.num_hidden_layers)
                .map(|i| Layer::load(encoder.pp(i), c))
                .collect::<Result<_>>()?,
        })
    }

    /// The last hidden states `(batch, len, hidden)` of `ids` `(batch, len)`, where `mask`
    /// (1 for a real token, 0 for padding) keeps padding out of every real token's attention.
    pub fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> Result<Tensor> {
        // 0 where attended, the most negative float where padded: softmax gives padding no
        // weight (as `transformers` does with `finfo.min`).
        let mask = mask
            .to_dtype(DTYPE)?
            .affine(-1.0, 1.0)?
            .affine(f64::from(f32::MIN), 0.0)?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        let mut x = self.embeddings.forward(ids, types)?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};
    use std::collections::HashMap;

    fn config() -> Config {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 16, "hidden_act": "gelu", "max_position_embeddings": 6,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "architectures": ["BertModel"]
        }))
        .unwrap()
    }

    /// Random weights with every name a BERT checkpoint has.
    fn model(c: &Config) -> Bert {
        let d = Device::Cpu;
        let mut w: HashMap<String, Tensor> = HashMap::new();
        let mut put = |name: String, shape: &[usize]| {
            w.insert(name, Tensor::randn(0f32, 0.5f32, shape, &d).unwrap());
        };
        let h = c.hidden_size;
        put(
            "embeddings.word_embeddings.weight".into(),
            &[c.vocab_size, h],
        );
        put(
            "embeddings.position_embeddings.weight".into(),
            &[c.max_position_embeddings, h],
        );
        put(
            "embeddings.token_type_embeddings.weight".into(),
            &[c.type_vocab_size, h],
        );
        put("embeddings.LayerNorm.weight".into(), &[h]);
        put("embeddings.LayerNorm.bias".into(), &[h]);
        for i in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            for (name, out, inp) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", c.intermediate_size, h),
                ("output.dense", h, c.intermediate_size),
            ] {
                put(format!("{p}.{name}.weight"), &[out, inp]);
                put(format!("{p}.{name}.bias"), &[out]);
            }
            for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
                put(format!("{p}.{name}.weight"), &[h]);
                put(format!("{p}.{name}.bias"), &[h]);
            }
        }
        Bert::load(VarBuilder::from_tensors(w, DTYPE, &d), c).unwrap()
    }

    #[test]
    fn padding_does_not_change_a_real_tokens_state() {
        let c = config();
        let m = model(&c);
        let d = Device::Cpu;
        let alone = Tensor::new(&[[1u32, 2, 3]], &d).unwrap();
        let padded = Tensor::new(&[[1u32, 2, 3, 0, 0]], &d).unwrap();
        let a = m
            .forward(
                &alone,
                &alone.zeros_like().unwrap(),
                &alone.ones_like().unwrap(),
            )
            .unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 0, 0]], &d).unwrap();
        let p = m
            .forward(&padded, &padded.zeros_like().unwrap(), &mask)
            .unwrap()
            .narrow(1, 0, 3)
            .unwrap();
        let diff = (a - p)
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(diff.iter().all(|d| *d < 1e-5), "{diff:?}");
    }

    #[test]
    fn unsupported_configs_and_missing_weights_are_refused() {
        let d = Device::Cpu;
        let mut c = config();
        c.position_embedding_type = Some("relative_key".into());
        let empty = || VarBuilder::from_tensors(HashMap::new(), DTYPE, &d);
        assert!(Bert::load(empty(), &c).is_err());
        let mut c = config();
        c.num_attention_heads = 3;
        assert!(Bert::load(empty(), &c).is_err());
        let mut c = config();
        c.layer_norm_eps = 0.0;
        assert!(Bert::load(empty(), &c).is_err());
        assert!(Bert::load(empty(), &config()).is_err());
    }
}
