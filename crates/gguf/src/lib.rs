//! Memory-safe structural validation of GGUF model files.
//!
//! **What it is for:** model files reach Highside across an air gap and are then opened by
//! llama.cpp, whose C++ parser trusts far more of the file than it should. Before any engine
//! touches a file, this crate parses the GGUF header, every metadata key-value pair and every
//! tensor info in safe Rust, and rejects anything malformed: bad magic or version, absurd
//! counts, over-long or non-UTF-8 strings, unknown value or tensor types, bad alignment,
//! tensors that are misaligned, overlap, or extend past the end of the file, and sizes that
//! overflow. Every count taken from the file is bounded by [`Limits`] before anything is
//! allocated for it, and no input can make it panic.
//!
//! **What it is not for:** it does not read or check tensor *data* (weights can still be
//! numerically garbage or adversarially trained), it does not authenticate the file (pair it
//! with a signature or hash check), and it does not check that the metadata describes a model
//! llama.cpp can actually run (missing hyper-parameters are the engine's problem). Passing
//! validation means "structurally sound", not "trustworthy".
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Untrusted input must never reach a panic: enforce checked arithmetic and access mechanically.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod error;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

pub use error::GgufError;
pub use types::GgmlType;

/// Deepest nesting of arrays inside metadata values (an array of arrays is depth 2).
pub const MAX_ARRAY_DEPTH: u32 = 2;

/// Longest tensor name in bytes: ggml's `GGML_MAX_NAME` (64) includes the NUL terminator.
pub const MAX_TENSOR_NAME_LEN: u64 = 63;

/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

const MAGIC: [u8; 4] = *b"GGUF";
const KEY_ALIGNMENT: &str = "general.alignment";

// GGUF metadata value type codes.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

// Large enough to make skipping numeric arrays cheap, small enough to live on the stack.
const SKIP_CHUNK: usize = 8192;

/// Upper bounds applied to everything the file declares, checked before allocating for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tensor infos a file may declare.
    pub max_tensors: u64,
    /// Most metadata key-value pairs a file may declare.
    pub max_metadata_kv: u64,
    /// Longest string (key, value, or array element) in bytes; chat templates included.
    pub max_string_len: u64,
    /// Most elements in one metadata array (applies to each nested array separately).
    pub max_array_len: u64,
    /// Most bytes of header (fixed header, metadata and tensor infos) that will be read.
    pub max_metadata_bytes: u64,
}

impl Default for Limits {
    /// Limits that comfortably fit every mainstream model while capping memory and work.
    fn default() -> Self {
        Limits {
            max_tensors: 65_536,
            max_metadata_kv: 65_536,
            max_string_len: 1 << 20,
            max_array_len: 16_777_216,
            max_metadata_bytes: 512 << 20,
        }
    }
}

/// A metadata value; integers are widened and arrays are summarised rather than kept.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type (u8, u16, u32, u64).
    U64(u64),
    /// Any signed integer type (i8, i16, i32, i64).
    I64(i64),
    /// Any float type (f32, f64).
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array, validated element by element but not retained (tokenizer vocabularies are huge).
    Array {
        /// GGUF value type code of the elements (9 for nested arrays).
        elem_type: u32,
        /// Number of elements.
        len: u64,
    },
}

/// One validated tensor info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, unique in the file.
    pub name: String,
    /// Dimensions, innermost first (ggml's `ne`), 1 to 4 of them, each at least 1.
    pub dims: Vec<u64>,
    /// Element type.
    pub dtype: GgmlType,
    /// Offset of the tensor's data relative to the start of the data section.
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub n_bytes: u64,
}

/// The result of a successful validation: header facts, tensor infos and scalar metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Alignment of the data section and of every tensor offset.
    pub alignment: u64,
    /// Absolute byte offset where the data section starts.
    pub data_offset: u64,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Number of metadata key-value pairs.
    pub metadata_count: u64,
    /// `general.architecture`, if present and a string.
    pub architecture: Option<String>,
    /// `general.name`, if present and a string.
    pub name: Option<String>,
    /// `{architecture}.context_length`, if present and a non-negative integer.
    pub context_length: Option<u64>,
    /// `tokenizer.chat_template`, if present and a string.
    pub chat_template: Option<String>,
    /// Sum of all tensors' element counts.
    pub parameter_count: u64,
    /// `general.file_type`, if present and an integer that fits in u32.
    pub file_type: Option<u32>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// All metadata, keyed by name.
    pub metadata: BTreeMap<String, MetaValue>,
}

/// Validates a complete GGUF file held in memory.
pub fn validate_bytes(bytes: &[u8], limits: &Limits) -> Result<GgufInfo, GgufError> {
    let len = u64::try_from(bytes.len()).map_err(|_| overflow("the file length"))?;
    validate_reader(bytes, len, limits)
}

/// Validates a GGUF file from a stream of `file_len` bytes, reading only the header and tensor infos.
///
/// Tensor data is never read: bounds are checked against `file_len`. Bytes the reader yields
/// beyond `file_len` are never requested; a reader that ends before `file_len` yields
/// [`GgufError::Truncated`].
pub fn validate_reader<R: Read>(
    reader: R,
    file_len: u64,
    limits: &Limits,
) -> Result<GgufInfo, GgufError> {
    Parser {
        src: Source {
            inner: reader,
            pos: 0,
            file_len,
            max_bytes: limits.max_metadata_bytes,
        },
        limits,
        scratch: Vec::new(),
    }
    .parse()
}

/// Opens `path` and validates it with [`validate_reader`].
pub fn validate_file(path: &Path, limits: &Limits) -> Result<GgufInfo, GgufError> {
    let file_err = |source| GgufError::File {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_err)?;
    let meta = file.metadata().map_err(file_err)?;
    // A directory or device has no meaningful length; refuse rather than misreport truncation.
    if !meta.is_file() {
        return Err(file_err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    validate_reader(BufReader::with_capacity(1 << 16, file), meta.len(), limits)
}

/// Where in the file a read happens, so truncation errors can say what was missing.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    Header,
    Key(u64),
    Value(&'a str),
    Tensor(u64),
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ctx::Header => f.write_str("the file header"),
            Ctx::Key(i) => write!(f, "metadata entry #{i}"),
            Ctx::Value(k) => write!(f, "metadata key '{k}'"),
            Ctx::Tensor(i) => write!(f, "tensor info #{i}"),
        }
    }
}

fn overflow(what: impl Into<String>) -> GgufError {
    GgufError::Overflow { what: what.into() }
}

/// Escapes untrusted text so error messages cannot carry control or bidi characters.
fn escape(s: &str) -> String {
    s.escape_debug().to_string()
}

/// A byte source that tracks its position and refuses to read past `file_len` or the header budget.
struct Source<R> {
    inner: R,
    pos: u64,
    file_len: u64,
    max_bytes: u64,
}

impl<R: Read> Source<R> {
    /// Checks that `n` more bytes exist and fit the budget; returns the position after them.
    fn reserve(&self, n: u64, what: &str, ctx: Ctx<'_>) -> Result<u64, GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| overflow(format!("the end of the {what} of {ctx}")))?;
        if end > self.file_len {
            return Err(GgufError::Truncated {
                offset: self.pos,
                what: format!("the {what} of {ctx}"),
            });
        }
        if end > self.max_bytes {
            return Err(GgufError::MetadataTooLarge {
                offset: self.pos,
                what: format!("the {what} of {ctx}"),
                limit: self.max_bytes,
            });
        }
        Ok(end)
    }

    fn fill(&mut self, buf: &mut [u8], what: &str, ctx: Ctx<'_>) -> Result<(), GgufError> {
        let n = u64::try_from(buf.len()).map_err(|_| overflow("a read size"))?;
        let end = self.reserve(n, what, ctx)?;
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos = end;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(GgufError::Truncated {
                offset: self.pos,
                what: format!("the {what} of {ctx}"),
            }),
            Err(e) => Err(GgufError::Io(e)),
        }
    }

    fn array<const N: usize>(&mut self, what: &str, ctx: Ctx<'_>) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what, ctx)?;
        Ok(b)
    }

    fn u8(&mut self, what: &str, ctx: Ctx<'_>) -> Result<u8, GgufError> {
        Ok(u8::from_le_bytes(self.array(what, ctx)?))
    }

    fn u32(&mut self, what: &str, ctx: Ctx<'_>) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what, ctx)?))
    }

    fn u64(&mut self, what: &str, ctx: Ctx<'_>) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what, ctx)?))
    }

    /// Reads `n` bytes in fixed-size chunks, handing each to `check` with its absolute offset.
    fn consume(
        &mut self,
        n: u64,
        what: &str,
        ctx: Ctx<'_>,
        mut check: impl FnMut(u64, &[u8]) -> Result<(), GgufError>,
    ) -> Result<(), GgufError> {
        // Fail on a truncated or over-budget array up front instead of after reading most of it.
        self.reserve(n, what, ctx)?;
        let mut buf = [0u8; SKIP_CHUNK];
        let mut left = n;
        while left > 0 {
            let take = usize::try_from(left).map_or(SKIP_CHUNK, |l| l.min(SKIP_CHUNK));
            let chunk = buf.get_mut(..take).ok_or_else(|| overflow("a read size"))?;
            let start = self.pos;
            self.fill(chunk, what, ctx)?;
            check(start, chunk)?;
            left = left.saturating_sub(self.pos.saturating_sub(start));
        }
        Ok(())
    }

    /// Reads a length-prefixed string's bytes into `buf`; returns the offset of the bytes.
    fn string_bytes(
        &mut self,
        buf: &mut Vec<u8>,
        limit: u64,
        what: &str,
        ctx: Ctx<'_>,
    ) -> Result<u64, GgufError> {
        let len_offset = self.pos;
        let len = self.u64("string length", ctx)?;
        if len > limit {
            return Err(GgufError::StringTooLong {
                offset: len_offset,
                len,
                limit,
                what: format!("the {what} of {ctx}"),
            });
        }
        // Only allocate once the bytes are known to exist in the file and the budget.
        self.reserve(len, what, ctx)?;
        let n = usize::try_from(len).map_err(|_| overflow(format!("the {what} of {ctx}")))?;
        buf.clear();
        buf.resize(n, 0);
        let offset = self.pos;
        self.fill(buf, what, ctx)?;
        Ok(offset)
    }
}

struct Parser<'l, R> {
    src: Source<R>,
    limits: &'l Limits,
    // Reused for strings that are validated but not kept (array elements), to avoid churn.
    scratch: Vec<u8>,
}

impl<R: Read> Parser<'_, R> {
    fn string(&mut self, limit: u64, what: &str, ctx: Ctx<'_>) -> Result<String, GgufError> {
        let mut buf = Vec::new();
        let offset = self.src.string_bytes(&mut buf, limit, what, ctx)?;
        String::from_utf8(buf).map_err(|_| GgufError::InvalidUtf8 {
            offset,
            what: format!("the {what} of {ctx}"),
        })
    }

    fn parse(mut self) -> Result<GgufInfo, GgufError> {
        let limits = *self.limits;
        let magic: [u8; 4] = self.src.array("magic", Ctx::Header)?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = self.src.u32("version", Ctx::Header)?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = self.src.u64("tensor count", Ctx::Header)?;
        if tensor_count > limits.max_tensors {
            return Err(GgufError::TooMany {
                what: "tensors".into(),
                count: tensor_count,
                limit: limits.max_tensors,
            });
        }
        let metadata_count = self.src.u64("metadata count", Ctx::Header)?;
        if metadata_count > limits.max_metadata_kv {
            return Err(GgufError::TooMany {
                what: "metadata entries".into(),
                count: metadata_count,
                limit: limits.max_metadata_kv,
            });
        }

        let mut metadata = BTreeMap::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for index in 0..metadata_count {
            let (key, value) = self.key_value(index, &metadata)?;
            if key == KEY_ALIGNMENT {
                alignment = match value {
                    MetaValue::U64(a) if a != 0 && a.is_power_of_two() => a,
                    MetaValue::U64(a) => {
                        return Err(GgufError::BadAlignment {
                            reason: format!("{a} is not a non-zero power of two"),
                        })
                    }
                    // key_value already rejected non-u32 types for this key.
                    _ => {
                        return Err(GgufError::BadAlignment {
                            reason: "it is not an integer".into(),
                        })
                    }
                };
            }
            metadata.insert(key, value);
        }

        let mut tensors = Vec::new();
        let mut names = BTreeSet::new();
        let mut parameter_count: u64 = 0;
        for index in 0..tensor_count {
            let (tensor, n_elements) = self.tensor_info(index, alignment, &names)?;
            parameter_count = parameter_count
                .checked_add(n_elements)
                .ok_or_else(|| overflow("the total parameter count"))?;
            names.insert(tensor.name.clone());
            tensors.push(tensor);
        }

        let header_end = self.src.pos;
        let data_offset = header_end
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| overflow("the start of the data section"))?;
        check_layout(&tensors, data_offset, self.src.file_len)?;

        let string_of = |key: &str| match metadata.get(key) {
            Some(MetaValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let architecture = string_of("general.architecture");
        let name = string_of("general.name");
        let chat_template = string_of("tokenizer.chat_template");
        let context_length = architecture
            .as_ref()
            .and_then(|a| metadata.get(&format!("{a}.context_length")))
            .and_then(|v| match *v {
                MetaValue::U64(n) => Some(n),
                MetaValue::I64(n) => u64::try_from(n).ok(),
                _ => None,
            });
        let file_type = metadata.get("general.file_type").and_then(|v| match *v {
            MetaValue::U64(n) => u32::try_from(n).ok(),
            MetaValue::I64(n) => u32::try_from(n).ok(),
            _ => None,
        });

        Ok(GgufInfo {
            version,
            alignment,
            data_offset,
            tensor_count,
            metadata_count,
            architecture,
            name,
            context_length,
            chat_template,
            parameter_count,
            file_type,
            tensors,
            metadata,
        })
    }

    fn key_value(
        &mut self,
        index: u64,
        seen: &BTreeMap<String, MetaValue>,
    ) -> Result<(String, MetaValue), GgufError> {
        let ctx = Ctx::Key(index);
        let key_offset = self.src.pos;
        let key = self.string(self.limits.max_string_len, "key", ctx)?;
        let invalid = |reason: String| GgufError::InvalidKey {
            offset: key_offset,
            index,
            reason,
        };
        if key.is_empty() {
            return Err(invalid("the key is empty".into()));
        }
        if key.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the key '{}' contains control characters",
                escape(&key)
            )));
        }
        if seen.contains_key(&key) {
            return Err(GgufError::DuplicateKey(escape(&key)));
        }
        let shown = escape(&key);
        let ctx = Ctx::Value(&shown);
        let ty_offset = self.src.pos;
        let ty = self.src.u32("value type", ctx)?;
        // llama.cpp reads the alignment with a type-asserting getter that aborts on mismatch.
        if key == KEY_ALIGNMENT && ty != T_U32 {
            return Err(GgufError::BadAlignment {
                reason: format!("it has value type {ty} but must be u32 (type {T_U32})"),
            });
        }
        let value = self.value(ty, ty_offset, &shown)?;
        Ok((key, value))
    }

    fn value(&mut self, ty: u32, ty_offset: u64, key: &str) -> Result<MetaValue, GgufError> {
        let ctx = Ctx::Value(key);
        let s = &mut self.src;
        Ok(match ty {
            T_U8 => MetaValue::U64(u64::from(s.u8("value", ctx)?)),
            T_I8 => MetaValue::I64(i64::from(i8::from_le_bytes(s.array("value", ctx)?))),
            T_U16 => MetaValue::U64(u64::from(u16::from_le_bytes(s.array("value", ctx)?))),
            T_I16 => MetaValue::I64(i64::from(i16::from_le_bytes(s.array("value", ctx)?))),
            T_U32 => MetaValue::U64(u64::from(s.u32("value", ctx)?)),
            T_I32 => MetaValue::I64(i64::from(i32::from_le_bytes(s.array("value", ctx)?))),
            T_F32 => MetaValue::F64(f64::from(f32::from_le_bytes(s.array("value", ctx)?))),
            T_BOOL => {
                let offset = s.pos;
                match s.u8("value", ctx)? {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    value => {
                        return Err(GgufError::BadBool {
                            offset,
                            value,
                            key: key.to_owned(),
                        })
                    }
                }
            }
            T_STRING => MetaValue::String(self.string(self.limits.max_string_len, "value", ctx)?),
            T_ARRAY => self.array(key, 1)?,
            T_U64 => MetaValue::U64(s.u64("value", ctx)?),
            T_I64 => MetaValue::I64(i64::from_le_bytes(s.array("value", ctx)?)),
            T_F64 => MetaValue::F64(f64::from_le_bytes(s.array("value", ctx)?)),
            _ => {
                return Err(GgufError::UnknownValueType {
                    offset: ty_offset,
                    ty,
                    key: key.to_owned(),
                })
            }
        })
    }

    /// Parses and validates an array at nesting `depth` (1 = top level) without retaining it.
    fn array(&mut self, key: &str, depth: u32) -> Result<MetaValue, GgufError> {
        let ctx = Ctx::Value(key);
        let ty_offset = self.src.pos;
        let elem_type = self.src.u32("array element type", ctx)?;
        let len = self.src.u64("array length", ctx)?;
        if len > self.limits.max_array_len {
            return Err(GgufError::TooMany {
                what: format!("elements in an array of metadata key '{key}'"),
                count: len,
                limit: self.limits.max_array_len,
            });
        }
        let fixed = match elem_type {
            T_U8 | T_I8 | T_BOOL => Some(1u64),
            T_U16 | T_I16 => Some(2),
            T_U32 | T_I32 | T_F32 => Some(4),
            T_U64 | T_I64 | T_F64 => Some(8),
            _ => None,
        };
        if let Some(size) = fixed {
            let total = len
                .checked_mul(size)
                .ok_or_else(|| overflow(format!("the size of an array of metadata key '{key}'")))?;
            let is_bool = elem_type == T_BOOL;
            self.src.consume(total, "array data", ctx, |start, chunk| {
                if !is_bool {
                    return Ok(());
                }
                match chunk.iter().zip(0u64..).find(|(b, _)| **b > 1) {
                    None => Ok(()),
                    Some((&value, i)) => Err(GgufError::BadBool {
                        offset: start.saturating_add(i),
                        value,
                        key: key.to_owned(),
                    }),
                }
            })?;
        } else if elem_type == T_STRING {
            let mut buf = std::mem::take(&mut self.scratch);
            for _ in 0..len {
                let offset = self.src.string_bytes(
                    &mut buf,
                    self.limits.max_string_len,
                    "array string",
                    ctx,
                )?;
                if std::str::from_utf8(&buf).is_err() {
                    return Err(GgufError::InvalidUtf8 {
                        offset,
                        what: format!("an array string of {ctx}"),
                    });
                }
            }
            // Keep a modest buffer for the next array, but do not pin a 1 MiB one.
            buf.truncate(0);
            buf.shrink_to(4096);
            self.scratch = buf;
        } else if elem_type == T_ARRAY {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(GgufError::ArrayTooDeep {
                    offset: ty_offset,
                    key: key.to_owned(),
                    limit: MAX_ARRAY_DEPTH,
                });
            }
            // Each nested array header is at least 12 bytes, so the header budget bounds this loop.
            for _ in 0..len {
                self.array(key, depth.saturating_add(1))?;
            }
        } else {
            return Err(GgufError::UnknownValueType {
                offset: ty_offset,
                ty: elem_type,
                key: key.to_owned(),
            });
        }
        Ok(MetaValue::Array { elem_type, len })
    }

    /// Parses one tensor info and checks everything that does not need the data section's position.
    fn tensor_info(
        &mut self,
        index: u64,
        alignment: u64,
        seen: &BTreeSet<String>,
    ) -> Result<(TensorInfo, u64), GgufError> {
        let ctx = Ctx::Tensor(index);
        let limit = MAX_TENSOR_NAME_LEN.min(self.limits.max_string_len);
        let raw_name = self.string(limit, "name", ctx)?;
        let name = escape(&raw_name);
        let bad = |reason: String| GgufError::BadTensor {
            name: name.clone(),
            index,
            reason,
        };
        if raw_name.is_empty() {
            return Err(bad("its name is empty".into()));
        }
        if raw_name.chars().any(char::is_control) {
            return Err(bad("its name contains control characters".into()));
        }
        if seen.contains(&raw_name) {
            return Err(GgufError::DuplicateTensor { name, index });
        }
        let n_dims = self.src.u32("dimension count", ctx)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(bad(format!(
                "it has {n_dims} dimensions; GGUF tensors have 1 to {MAX_DIMS}"
            )));
        }
        let mut ne = [1u64; MAX_DIMS as usize];
        for slot in ne.iter_mut().take(n_dims as usize) {
            *slot = self.src.u64("dimension", ctx)?;
        }
        let dims: Vec<u64> = ne.iter().copied().take(n_dims as usize).collect();
        if let Some(j) = dims.iter().position(|&d| d == 0) {
            return Err(bad(format!(
                "dimension {j} is 0; every dimension must be at least 1"
            )));
        }
        let ty = self.src.u32("type", ctx)?;
        let dtype = GgmlType::from_u32(ty).ok_or_else(|| GgufError::UnknownDtype {
            tensor: name.clone(),
            index,
            ty,
        })?;
        let offset = self.src.u64("data offset", ctx)?;

        // ggml stores dimensions and element counts as int64_t, so stay below i64::MAX.
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| {
                overflow(format!(
                    "the element count of tensor '{name}' (#{index}) with dimensions {dims:?}"
                ))
            })?;
        let block = dtype.block_size();
        let ne0 = dims.first().copied().unwrap_or(0);
        if ne0.checked_rem(block) != Some(0) {
            return Err(bad(format!(
                "its first dimension {ne0} is not a multiple of the {dtype} block size {block}"
            )));
        }
        // ne0 % block == 0 implies n_elements % block == 0, so this division is exact.
        let n_bytes = n_elements
            .checked_div(block)
            .and_then(|blocks| blocks.checked_mul(dtype.type_size()))
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| overflow(format!("the byte size of tensor '{name}' (#{index})")))?;
        if offset.checked_rem(alignment) != Some(0) {
            return Err(GgufError::MisalignedTensor {
                tensor: name,
                index,
                offset,
                alignment,
            });
        }
        Ok((
            TensorInfo {
                name: raw_name,
                dims,
                dtype,
                offset,
                n_bytes,
            },
            n_elements,
        ))
    }
}

/// Checks that every tensor lies inside the file and that no two tensors share bytes.
fn check_layout(tensors: &[TensorInfo], data_offset: u64, file_len: u64) -> Result<(), GgufError> {
    for (index, t) in (0u64..).zip(tensors) {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes))
            .ok_or_else(|| {
                overflow(format!(
                    "the end of tensor '{}' (#{index})",
                    escape(&t.name)
                ))
            })?;
        if end > file_len {
            return Err(GgufError::TensorOutOfBounds {
                tensor: escape(&t.name),
                index,
                end,
                file_len,
            });
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| (t.offset, t.n_bytes));
    for pair in by_offset.windows(2) {
        let [a, b] = pair else { continue };
        // Cannot overflow: the bounds loop above proved data_offset + offset + n_bytes fits.
        let a_end = a.offset.saturating_add(a.n_bytes);
        if a_end > b.offset {
            return Err(GgufError::TensorsOverlap {
                a: escape(&a.name),
                a_start: a.offset,
                a_end,
                b: escape(&b.name),
                b_start: b.offset,
            });
        }
    }
    Ok(())
}
