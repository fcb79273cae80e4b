//! A tiny GGUF writer for tests: valid by default, with knobs to break each field.
#![allow(dead_code)] // Each test binary uses a different subset.

pub const T_U8: u32 = 0;
pub const T_I8: u32 = 1;
pub const T_U16: u32 = 2;
pub const T_I16: u32 = 3;
pub const T_U32: u32 = 4;
pub const T_I32: u32 = 5;
pub const T_F32: u32 = 6;
pub const T_BOOL: u32 = 7;
pub const T_STRING: u32 = 8;
pub const T_ARRAY: u32 = 9;
pub const T_U64: u32 = 10;
pub const T_I64: u32 = 11;
pub const T_F64: u32 = 12;

pub const GGML_F32: u32 = 0;
pub const GGML_Q4_1: u32 = 3;

/// GGUF string encoding: u64 length then bytes.
pub fn gstr(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// Array value encoding: element type, count, then pre-encoded elements.
pub fn garray(elem_type: u32, len: u64, elems: &[u8]) -> Vec<u8> {
    let mut v = elem_type.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(elems);
    v
}

#[derive(Clone)]
pub struct Gguf {
    pub magic: [u8; 4],
    pub version: u32,
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
    kvs: Vec<u8>,
    n_kv: u64,
    tensors: Vec<u8>,
    n_tensors: u64,
    /// Padding applied between the tensor infos and the data section.
    pub alignment: u64,
    pub data_len: u64,
}

impl Gguf {
    pub fn new() -> Self {
        Gguf {
            magic: *b"GGUF",
            version: 3,
            tensor_count: None,
            kv_count: None,
            kvs: Vec::new(),
            n_kv: 0,
            tensors: Vec::new(),
            n_tensors: 0,
            alignment: 32,
            data_len: 0,
        }
    }

    pub fn kv_raw(mut self, key: &[u8], ty: u32, value: &[u8]) -> Self {
        self.kvs.extend(gstr(key));
        self.kvs.extend(ty.to_le_bytes());
        self.kvs.extend_from_slice(value);
        self.n_kv += 1;
        self
    }

    pub fn kv(self, key: &str, ty: u32, value: &[u8]) -> Self {
        self.kv_raw(key.as_bytes(), ty, value)
    }

    pub fn kv_u32(self, key: &str, v: u32) -> Self {
        self.kv(key, T_U32, &v.to_le_bytes())
    }

    pub fn kv_str(self, key: &str, v: &str) -> Self {
        self.kv(key, T_STRING, &gstr(v.as_bytes()))
    }

    pub fn kv_str_array(self, key: &str, items: &[&str]) -> Self {
        let elems: Vec<u8> = items.iter().flat_map(|s| gstr(s.as_bytes())).collect();
        self.kv(key, T_ARRAY, &garray(T_STRING, items.len() as u64, &elems))
    }

    /// Sets `general.alignment` and pads the data section to match.
    pub fn with_alignment(mut self, a: u32) -> Self {
        self.alignment = u64::from(a);
        self.kv_u32("general.alignment", a)
    }

    pub fn tensor_raw(mut self, info: &[u8]) -> Self {
        self.tensors.extend_from_slice(info);
        self.n_tensors += 1;
        self
    }

    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut info = gstr(name.as_bytes());
        info.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            info.extend(d.to_le_bytes());
        }
        info.extend(ty.to_le_bytes());
        info.extend(offset.to_le_bytes());
        self.tensor_raw(&info)
    }

    pub fn data(mut self, len: u64) -> Self {
        self.data_len = len;
        self
    }

    /// Length of header, metadata and tensor infos, before alignment padding.
    pub fn header_len(&self) -> usize {
        4 + 4 + 8 + 8 + self.kvs.len() + self.tensors.len()
    }

    pub fn data_offset(&self) -> usize {
        let a = self.alignment as usize;
        self.header_len().div_ceil(a) * a
    }

    pub fn build(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.magic);
        v.extend(self.version.to_le_bytes());
        v.extend(self.tensor_count.unwrap_or(self.n_tensors).to_le_bytes());
        v.extend(self.kv_count.unwrap_or(self.n_kv).to_le_bytes());
        v.extend_from_slice(&self.kvs);
        v.extend_from_slice(&self.tensors);
        assert_eq!(v.len(), self.header_len());
        v.resize(self.data_offset(), 0);
        v.extend((0..self.data_len).map(|i| (i % 251) as u8));
        v
    }
}

pub const CHAT_TEMPLATE: &str =
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}";

/// Metadata shared by the valid fixtures: one key of every scalar type, a string array and a
/// nested array, so that every value parser is exercised.
pub fn with_metadata(g: Gguf) -> Gguf {
    let nested = {
        let inner_a = garray(T_U8, 2, &[7, 8]);
        let inner_b = garray(T_U8, 0, &[]);
        garray(T_ARRAY, 2, &[inner_a, inner_b].concat())
    };
    let scores: Vec<u8> = [0.0f32, -1.5, 2.25]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    g.kv_str("general.architecture", "llama")
        .kv_str("general.name", "tiny-test")
        .kv_u32("general.file_type", 3)
        .kv_u32("llama.context_length", 2048)
        .kv("llama.u8", T_U8, &[200])
        .kv("llama.i8", T_I8, &(-3i8).to_le_bytes())
        .kv("llama.u16", T_U16, &60000u16.to_le_bytes())
        .kv("llama.i16", T_I16, &(-30000i16).to_le_bytes())
        .kv("llama.i32", T_I32, &(-7i32).to_le_bytes())
        .kv("llama.f32", T_F32, &0.5f32.to_le_bytes())
        .kv("llama.bool", T_BOOL, &[1])
        .kv("llama.u64", T_U64, &u64::MAX.to_le_bytes())
        .kv("llama.i64", T_I64, &i64::MIN.to_le_bytes())
        .kv("llama.f64", T_F64, &(-2.5f64).to_le_bytes())
        .kv_str("tokenizer.chat_template", CHAT_TEMPLATE)
        .kv_str_array("tokenizer.ggml.tokens", &["<s>", "</s>", "hé"])
        .kv("tokenizer.ggml.scores", T_ARRAY, &garray(T_F32, 3, &scores))
        .kv(
            "tokenizer.ggml.flags",
            T_ARRAY,
            &garray(T_BOOL, 3, &[0, 1, 0]),
        )
        .kv("test.nested", T_ARRAY, &nested)
}

/// Number of kv pairs `with_metadata` adds.
pub const METADATA_KVS: u64 = 19;

/// A valid file: 64-byte alignment, two F32 tensors and one Q4_1 tensor, data ending at EOF.
///
/// Layout (relative to the data section): token_embd 0..96, attn_q 128..208, output_norm 256..288.
pub fn valid() -> Gguf {
    with_metadata(Gguf::new())
        .with_alignment(64)
        .tensor("token_embd.weight", &[8, 3], GGML_F32, 0)
        .tensor("blk.0.attn_q.weight", &[64, 2], GGML_Q4_1, 128)
        .tensor("output_norm.weight", &[8], GGML_F32, 256)
        .data(288)
}

/// A valid file plus a fourth tensor described by the caller, with room for it in the data.
pub fn valid_with_tensor(name: &str, dims: &[u64], ty: u32, offset: u64) -> Gguf {
    valid().tensor(name, dims, ty, offset).data(4096)
}
