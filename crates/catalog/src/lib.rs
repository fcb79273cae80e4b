//! Model import across the air gap: a file is copied into the data directory's model store
//! while it is hashed, the *copy* is validated as GGUF in safe Rust (so what the engine later
//! opens is exactly what was checked), and only then is it named by its digest and recorded in
//! the catalog. Any failure removes the partial copy and leaves the catalog unchanged.
//! This crate does not load models; the engine does, and only files this crate admitted.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use highside_gguf::{GgufError, GgufInfo, Limits};
use highside_store::{DataDir, ModelFormat, ModelRecord, Store, StoreError};
use sha2::{Digest, Sha256};

/// Receives progress while a large file is copied and hashed.
pub trait Progress {
    /// Called once with the total byte count before copying starts.
    fn start(&mut self, total_bytes: u64);
    /// Called as bytes are copied.
    fn advance(&mut self, bytes: u64);
    /// Called when copying is done, before validation.
    fn finish(&mut self);
}

/// A progress sink that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// Why an import or removal failed; nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The source file could not be read.
    #[error("cannot read {path}: {source}")]
    Source {
        /// The file given to import.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing into the model store failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path being written.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a well-formed GGUF model.
    #[error("{path} is not a valid GGUF model: {source}")]
    Invalid {
        /// The file given to import.
        path: String,
        /// What the validator found.
        source: GgufError,
    },
    /// The directory is not a loadable embedding model.
    #[error("{path} is not a valid embedding model: {message}")]
    InvalidEmbedding {
        /// The directory given to import.
        path: String,
        /// Why.
        message: String,
    },
    /// The model name is not acceptable.
    #[error("invalid model name '{0}': use 1-64 characters from letters, digits, '.', '_', '-', ':' and '/'")]
    BadName(String),
    /// The catalog refused the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a public model name: what clients type in the `model` field.
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
        && !name.starts_with(['.', '/', '-']);
    if ok {
        Ok(())
    } else {
        Err(CatalogError::BadName(name.to_owned()))
    }
}

/// Removes a file on drop unless disarmed: the partial copy never outlives a failed import.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Imports `source` into `dir` under `name` with accreditation `label`.
pub fn import(
    dir: &DataDir,
    store: &dyn Store,
    source: &Path,
    name: &str,
    label: &str,
    progress: &mut dyn Progress,
) -> Result<(ModelRecord, GgufInfo), CatalogError> {
    validate_name(name)?;
    // Fail before copying gigabytes when the name is already taken.
    if store.get_model(name)?.is_some() {
        return Err(StoreError::DuplicateModel(name.to_owned()).into());
    }
    let read_err = |e: std::io::Error| CatalogError::Source {
        path: source.display().to_string(),
        source: e,
    };
    let mut input = File::open(source).map_err(read_err)?;
    let total = input.metadata().map_err(read_err)?.len();

    let tmp_path = dir
        .models_dir()
        .join(format!(".import-{}.partial", std::process::id()));
    let write_err = |e: std::io::Error| CatalogError::Write {
        path: tmp_path.display().to_string(),
        source: e,
    };
    let mut tmp = TempFile {
        path: tmp_path.clone(),
        armed: true,
    };
    let mut out = File::create(&tmp.path).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    progress.start(total);
    loop {
        let n = input.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(write_err)?;
        copied += n as u64;
        progress.advance(n as u64);
    }
    out.sync_all().map_err(write_err)?;
    drop(out);
    progress.finish();

    let info = highside_gguf::validate_file(&tmp.path, &Limits::default()).map_err(|e| {
        CatalogError::Invalid {
            path: source.display().to_string(),
            source: e,
        }
    })?;
    let digest = hex::encode(hasher.finalize());
    let final_path = dir.model_path(&digest);
    std::fs::rename(&tmp.path, &final_path).map_err(write_err)?;
    tmp.armed = false;
    sync_dir(&dir.models_dir()).map_err(write_err)?;

    let record = ModelRecord {
        name: name.to_owned(),
        digest: digest.clone(),
        architecture: info.architecture.clone(),
        parameters: info.parameter_count,
        context_length: info.context_length,
        chat_template: info.chat_template.clone(),
        size_bytes: copied,
        label: label.to_owned(),
        imported_at: now_rfc3339(),
        format: ModelFormat::Gguf,
    };
    if let Err(e) = store.insert_model(&record) {
        // Another model may already use the same file (same digest): only remove an orphan.
        if store.count_digest_refs(&digest).unwrap_or(1) == 0 {
            let _ = std::fs::remove_file(&final_path);
        }
        return Err(e.into());
    }
    Ok((record, info))
}

/// Removes a directory on drop unless disarmed.
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Imports the embedding model in the directory `source` (`config.json`, `model.safetensors`,
/// `tokenizer.json`; nothing else is copied) into `dir` under `name`. Each file is hashed
/// while copied; the model is named by the SHA-256 of the three files' names and digests, the
/// *copies* are loaded once to prove they work, and only then recorded.
pub fn import_embedding(
    dir: &DataDir,
    store: &dyn Store,
    source: &Path,
    name: &str,
    label: &str,
    progress: &mut dyn Progress,
) -> Result<(ModelRecord, highside_embed::Info), CatalogError> {
    validate_name(name)?;
    if store.get_model(name)?.is_some() {
        return Err(StoreError::DuplicateModel(name.to_owned()).into());
    }
    let tmp = TempDir {
        path: dir
            .models_dir()
            .join(format!(".import-{}.partial.embedding", std::process::id())),
        armed: true,
    };
    let write_err = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| CatalogError::Write { path: p, source: e }
    };
    let _ = std::fs::remove_dir_all(&tmp.path);
    std::fs::create_dir(&tmp.path).map_err(write_err(&tmp.path))?;
    let mut sources = Vec::new();
    let mut total = 0;
    for file in highside_embed::FILES {
        let from = source.join(file);
        let f = File::open(&from).map_err(|e| CatalogError::Source {
            path: from.display().to_string(),
            source: e,
        })?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        total += len;
        sources.push((file, from, f));
    }
    progress.start(total);
    let mut manifest = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (file, from, mut input) in sources {
        let to = tmp.path.join(file);
        let mut out = File::create(&to).map_err(write_err(&to))?;
        let mut hasher = Sha256::new();
        loop {
            let n = input.read(&mut buf).map_err(|e| CatalogError::Source {
                path: from.display().to_string(),
                source: e,
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(write_err(&to))?;
            progress.advance(n as u64);
        }
        out.sync_all().map_err(write_err(&to))?;
        manifest.update(format!("{file} {}\n", hex::encode(hasher.finalize())).as_bytes());
    }
    progress.finish();
    sync_dir(&tmp.path).map_err(write_err(&tmp.path))?;
    let info = highside_embed::inspect(&tmp.path).map_err(|e| CatalogError::InvalidEmbedding {
        path: source.display().to_string(),
        message: e.to_string(),
    })?;
    let digest = hex::encode(manifest.finalize());
    let final_path = dir.embedding_path(&digest);
    let mut tmp = tmp;
    if final_path.exists() {
        // The same files under another name: share them.
        std::fs::remove_dir_all(&tmp.path).map_err(write_err(&tmp.path))?;
    } else {
        std::fs::rename(&tmp.path, &final_path).map_err(write_err(&final_path))?;
    }
    tmp.armed = false;
    sync_dir(&dir.models_dir()).map_err(write_err(&dir.models_dir()))?;
    let record = ModelRecord {
        name: name.to_owned(),
        digest: digest.clone(),
        architecture: Some("bert".into()),
        parameters: info.parameters,
        context_length: Some(info.max_tokens as u64),
        chat_template: None,
        size_bytes: total,
        label: label.to_owned(),
        imported_at: now_rfc3339(),
        format: ModelFormat::Embedding,
    };
    if let Err(e) = store.insert_model(&record) {
        if store.count_digest_refs(&digest).unwrap_or(1) == 0 {
            let _ = std::fs::remove_dir_all(&final_path);
        }
        return Err(e.into());
    }
    Ok((record, info))
}

/// Removes a model from the catalog, and its file once no other name refers to it.
pub fn remove(dir: &DataDir, store: &dyn Store, name: &str) -> Result<ModelRecord, CatalogError> {
    let record = store.remove_model(name)?;
    if store.count_digest_refs(&record.digest)? == 0 && record.format == ModelFormat::Embedding {
        let path = dir.embedding_path(&record.digest);
        return match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(record),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(record),
            Err(e) => Err(CatalogError::Write {
                path: path.display().to_string(),
                source: e,
            }),
        };
    }
    if store.count_digest_refs(&record.digest)? == 0 {
        let path = dir.model_path(&record.digest);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CatalogError::Write {
                    path: path.display().to_string(),
                    source: e,
                })
            }
        }
    }
    Ok(record)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    // A rename is durable only once its directory is synced.
    File::open(path)?.sync_all()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
