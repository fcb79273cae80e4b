//! Highside's embedded state: the data directory layout, the model catalog and identities.
//!
//! The [`Store`] trait is what the rest of Highside talks to; [`SqliteStore`] is the embedded
//! default. A PostgreSQL backend (for several replicas) will implement the same trait with its
//! own migration folder, so no caller changes. This crate knows nothing of HTTP or the engine.
#![forbid(unsafe_code)]

mod datadir;
mod identity;
mod metering;
mod migrate;
mod sqlite;
mod sqlite_identity;
mod sqlite_metering;

pub use datadir::DataDir;
pub use identity::{
    AgencyRecord, ApiKeyRecord, CertMappingRecord, IdentityStore, Page, Scope, UserRecord,
};
pub use metering::{
    Exceeded, LedgerEntry, LimitScope, Limits, MeteringStore, PlanRecord, PriceRecord,
    ReservationRequest, Subjects, Totals,
};
pub use sqlite::SqliteStore;

/// A model as recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelRecord {
    /// Public name clients use in the `model` field.
    pub name: String,
    /// Lowercase hex SHA-256 of the file, which is also its file name in the model store.
    pub digest: String,
    /// `general.architecture` from the GGUF metadata.
    pub architecture: Option<String>,
    /// Total element count of all tensors.
    pub parameters: u64,
    /// Context length the model was trained with.
    pub context_length: Option<u64>,
    /// Jinja chat template from `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// The highest label the model is accredited to process: a canonical banner, validated
    /// against the enclave's label encodings when it is set and again when the model loads.
    pub label: String,
    /// RFC 3339 UTC time of import.
    pub imported_at: String,
    /// A GGUF chat model or an embedding model directory.
    pub format: ModelFormat,
}

/// What kind of files a model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// One GGUF file, served by the llama.cpp engine.
    Gguf,
    /// `config.json`, `model.safetensors` and `tokenizer.json`, served by the encoder.
    Embedding,
}

impl ModelFormat {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gguf => "gguf",
            Self::Embedding => "embedding",
        }
    }

    /// Reads the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gguf" => Some(Self::Gguf),
            "embedding" => Some(Self::Embedding),
            _ => None,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A filesystem operation on the data directory failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The path in question.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The data directory has not been created with `highside init`.
    #[error("{0} is not a Highside data directory (run `highside init --data {0}` first)")]
    NotInitialized(String),
    /// A model with this name is already in the catalog.
    #[error("a model named '{0}' already exists")]
    DuplicateModel(String),
    /// No model with this name is in the catalog.
    #[error("no model named '{0}'")]
    UnknownModel(String),
    /// The database was written by a newer Highside.
    #[error("the database schema is version {found}, newer than this Highside knows ({known})")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Highest version this build knows.
        known: i64,
    },
    /// A unique name or value is already taken; names what.
    #[error("{0} already exists")]
    Duplicate(String),
    /// The row to change does not exist.
    #[error("no such {0}")]
    NotFound(String),
    /// `init` found users already: the first operator exists.
    #[error("this data directory already has users; the first operator was created before")]
    AlreadyBootstrapped,
    /// A stored value does not fit the type Highside expects.
    #[error("corrupt catalog row: {0}")]
    Corrupt(String),
}

/// The catalog operations every backend provides.
pub trait Store: Send + Sync {
    /// Adds a model; fails with [`StoreError::DuplicateModel`] if the name is taken.
    fn insert_model(&self, model: &ModelRecord) -> Result<(), StoreError>;
    /// Looks a model up by name.
    fn get_model(&self, name: &str) -> Result<Option<ModelRecord>, StoreError>;
    /// Every model, ordered by name.
    fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError>;
    /// Removes a model by name and returns its record.
    fn remove_model(&self, name: &str) -> Result<ModelRecord, StoreError>;
    /// Changes a model's accreditation marking and returns the updated record.
    fn set_model_label(&self, name: &str, label: &str) -> Result<ModelRecord, StoreError>;
    /// How many catalog rows still refer to a file digest.
    fn count_digest_refs(&self, digest: &str) -> Result<u64, StoreError>;
}
