//! Everything that can be wrong with a GGUF file, phrased for the operator who has to act on it.

use std::path::PathBuf;

/// Why a GGUF file was rejected.
///
/// Names and keys taken from the file are escaped before they are stored here, so printing an
/// error can never inject terminal control sequences into a log or console.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened or its size could not be read.
    #[error("cannot open GGUF file '{}': {source}", path.display())]
    File {
        /// The path that was being opened.
        path: PathBuf,
        /// The underlying operating-system error.
        source: std::io::Error,
    },

    /// Reading failed for a reason other than the file ending early.
    #[error("I/O error while reading the GGUF file: {0}")]
    Io(#[from] std::io::Error),

    /// The file ends before a structure it declares.
    #[error(
        "the file is truncated: it ends before {what} at byte {offset}; \
         the copy is incomplete or corrupt, transfer it again"
    )]
    Truncated {
        /// Byte offset where the missing structure starts.
        offset: u64,
        /// What was being read.
        what: String,
    },

    /// The first four bytes are not `GGUF`.
    #[error(
        "not a GGUF file: the first four bytes are {found:02x?}, expected \"GGUF\" (47 47 55 46)"
    )]
    BadMagic {
        /// The four bytes found at the start of the file.
        found: [u8; 4],
    },

    /// The GGUF version is not 2 or 3.
    #[error(
        "unsupported GGUF version {0}: only versions 2 and 3 are accepted \
         (version 1 is obsolete; a huge number usually means a big-endian file); \
         re-convert the model with a current llama.cpp"
    )]
    UnsupportedVersion(u32),

    /// A count in the file exceeds the configured limit.
    #[error(
        "the file declares {count} {what}, more than the limit of {limit}; \
         the file is corrupt or larger than this server accepts"
    )]
    TooMany {
        /// What is being counted.
        what: String,
        /// The count declared by the file.
        count: u64,
        /// The configured limit.
        limit: u64,
    },

    /// The header (metadata and tensor infos) is larger than the configured byte budget.
    #[error(
        "the GGUF header is larger than the limit of {limit} bytes (reached at byte {offset} \
         while reading {what}); the file is corrupt or larger than this server accepts"
    )]
    MetadataTooLarge {
        /// Byte offset of the read that crossed the limit.
        offset: u64,
        /// What was being read.
        what: String,
        /// The configured limit in bytes.
        limit: u64,
    },

    /// A string is longer than allowed.
    #[error("{what} at byte {offset} is {len} bytes long, more than the limit of {limit} bytes")]
    StringTooLong {
        /// Byte offset of the string's length prefix.
        offset: u64,
        /// Declared length in bytes.
        len: u64,
        /// The limit in bytes.
        limit: u64,
        /// Which string.
        what: String,
    },

    /// A string is not valid UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Byte offset of the string's bytes.
        offset: u64,
        /// Which string.
        what: String,
    },

    /// A metadata key is empty or contains control characters.
    #[error("metadata key #{index} at byte {offset} is invalid: {reason}")]
    InvalidKey {
        /// Byte offset of the key.
        offset: u64,
        /// Position of the key-value pair in the file.
        index: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A metadata value type (or array element type) is not one GGUF defines.
    #[error("metadata key '{key}' has unknown value type {ty} at byte {offset}")]
    UnknownValueType {
        /// Byte offset of the type field.
        offset: u64,
        /// The type code found.
        ty: u32,
        /// The key it belongs to.
        key: String,
    },

    /// A boolean is neither 0 nor 1.
    #[error("metadata key '{key}' has a boolean with value {value} at byte {offset}; only 0 and 1 are valid")]
    BadBool {
        /// Byte offset of the boolean.
        offset: u64,
        /// The byte found.
        value: u8,
        /// The key it belongs to.
        key: String,
    },

    /// Arrays are nested deeper than allowed.
    #[error("metadata key '{key}' nests arrays more than {limit} levels deep at byte {offset}")]
    ArrayTooDeep {
        /// Byte offset of the innermost array's element type.
        offset: u64,
        /// The key it belongs to.
        key: String,
        /// Maximum nesting depth.
        limit: u32,
    },

    /// The same metadata key appears twice.
    #[error("metadata key '{0}' appears more than once")]
    DuplicateKey(String),

    /// `general.alignment` has the wrong type or value.
    #[error("bad general.alignment: {reason}")]
    BadAlignment {
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor info is structurally invalid.
    #[error("tensor '{name}' (#{index}) is invalid: {reason}")]
    BadTensor {
        /// Tensor name (escaped; empty if the name itself is the problem).
        name: String,
        /// Position of the tensor info in the file.
        index: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// Two tensors share a name.
    #[error("tensor name '{name}' is used twice (second time by tensor #{index})")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
        /// Position of the second occurrence.
        index: u64,
    },

    /// A tensor uses a ggml type this validator does not know.
    #[error(
        "tensor '{tensor}' (#{index}) has unknown or removed ggml type {ty}; \
         re-quantize the model with a supported type"
    )]
    UnknownDtype {
        /// Tensor name.
        tensor: String,
        /// Position of the tensor info in the file.
        index: u64,
        /// The type code found.
        ty: u32,
    },

    /// A tensor's data extends past the end of the file.
    #[error("tensor '{tensor}' (#{index}) ends at byte {end} but the file has {file_len} bytes")]
    TensorOutOfBounds {
        /// Tensor name.
        tensor: String,
        /// Position of the tensor info in the file.
        index: u64,
        /// Absolute byte offset one past the tensor's last byte.
        end: u64,
        /// Length of the file.
        file_len: u64,
    },

    /// Two tensors' data ranges overlap.
    #[error(
        "tensors '{a}' (data bytes {a_start}..{a_end}) and '{b}' (starting at data byte {b_start}) overlap"
    )]
    TensorsOverlap {
        /// The tensor that starts first.
        a: String,
        /// Start of `a`, relative to the data section.
        a_start: u64,
        /// End of `a`, relative to the data section.
        a_end: u64,
        /// The tensor that starts inside `a`.
        b: String,
        /// Start of `b`, relative to the data section.
        b_start: u64,
    },

    /// A tensor's offset is not a multiple of the alignment.
    #[error(
        "tensor '{tensor}' (#{index}) has data offset {offset}, which is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// Tensor name.
        tensor: String,
        /// Position of the tensor info in the file.
        index: u64,
        /// The offset found, relative to the data section.
        offset: u64,
        /// The required alignment.
        alignment: u64,
    },

    /// A size or count computed from the file does not fit in 64 bits (or in ggml's `int64_t`).
    #[error("arithmetic overflow computing {what}; the file is malformed")]
    Overflow {
        /// What was being computed.
        what: String,
    },
}
