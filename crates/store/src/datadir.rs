use std::path::{Path, PathBuf};

use crate::{SqliteStore, StoreError};

const DB_FILE: &str = "highside.db";
const MODELS_DIR: &str = "models";
/// The master that AWS secret access keys derive from (see `highside_identity::AwsKeyMaster`).
const AWS_MASTER_FILE: &str = "aws-keys.master";

/// The layout of one data directory: `highside.db`, `highside.toml`, `models/` and
/// `aws-keys.master`.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DataDir {
    /// Creates the directory tree and database (idempotent) and returns the layout.
    pub fn create(root: &Path) -> Result<Self, StoreError> {
        let dir = Self {
            root: root.to_path_buf(),
        };
        std::fs::create_dir_all(dir.models_dir()).map_err(io_err(root))?;
        restrict_permissions(root)?;
        SqliteStore::open(&dir.db_path())?;
        Ok(dir)
    }

    /// Opens an existing data directory; fails if `init` has not created it.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = Self {
            root: root.to_path_buf(),
        };
        if !dir.db_path().is_file() || !dir.models_dir().is_dir() {
            return Err(StoreError::NotInitialized(root.display().to_string()));
        }
        Ok(dir)
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.root.join(DB_FILE)
    }

    /// Where imported model files live, named by digest.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join(MODELS_DIR)
    }

    /// The stored file of a model with this digest.
    pub fn model_path(&self, digest: &str) -> PathBuf {
        self.models_dir().join(format!("{digest}.gguf"))
    }

    /// The AWS key master, created (owner-only, synced) on first use. Never replaced: every
    /// issued access key pair's secret derives from it.
    pub fn aws_key_master(&self) -> Result<highside_identity::AwsKeyMaster, StoreError> {
        use std::io::Write;
        let path = self.root.join(AWS_MASTER_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => highside_identity::AwsKeyMaster::from_bytes(&bytes).ok_or_else(|| {
                io_err(&path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the AWS key master must be exactly 32 bytes",
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (bytes, master) = highside_identity::AwsKeyMaster::generate();
                // Written whole under a temporary name, then renamed: a crash never leaves a
                // short master behind.
                let tmp = path.with_extension("partial");
                let _ = std::fs::remove_file(&tmp);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
                file.write_all(&bytes).map_err(io_err(&tmp))?;
                file.sync_all().map_err(io_err(&tmp))?;
                std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
                std::fs::File::open(&self.root)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(&self.root))?;
                Ok(master)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The stored directory of an embedding model with this manifest digest.
    pub fn embedding_path(&self, digest: &str) -> PathBuf {
        self.models_dir().join(format!("{digest}.embedding"))
    }

    /// Opens the embedded store of this directory.
    pub fn open_store(&self) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(&self.db_path())
    }
}

#[cfg(unix)]
fn restrict_permissions(root: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    // The data directory will hold credentials and the audit key: owner only.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io_err(root))
}

#[cfg(not(unix))]
fn restrict_permissions(_root: &Path) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_requires_init() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("d");
        assert!(matches!(
            DataDir::open(&root),
            Err(StoreError::NotInitialized(_))
        ));
        DataDir::create(&root).unwrap();
        let dir = DataDir::open(&root).unwrap();
        assert!(dir.db_path().is_file());
        // Creating twice is harmless.
        DataDir::create(&root).unwrap();
    }
}
