use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{migrate, ModelFormat, ModelRecord, Store, StoreError};

/// The embedded SQLite backend: one connection in WAL mode behind a mutex.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// A second connection for the reads on every request's path (authentication, prices,
    /// limits): under WAL they see every committed write without waiting behind a commit's
    /// sync on the writing connection.
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Prepared statements kept per connection (every statement the store has fits).
const STATEMENT_CACHE: usize = 128;

const MODEL_COLUMNS: &str =
    "name, digest, architecture, parameters, context_length, chat_template, size_bytes, label, imported_at, format";

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("{what} {v} does not fit the database")))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<ModelRecord> {
    let nonneg = |i: usize| -> rusqlite::Result<u64> {
        let v: i64 = row.get(i)?;
        u64::try_from(v).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Integer,
                Box::new(e),
            )
        })
    };
    let ctx: Option<i64> = row.get(4)?;
    Ok(ModelRecord {
        name: row.get(0)?,
        digest: row.get(1)?,
        architecture: row.get(2)?,
        parameters: nonneg(3)?,
        context_length: ctx.and_then(|c| u64::try_from(c).ok()),
        chat_template: row.get(5)?,
        size_bytes: nonneg(6)?,
        label: row.get(7)?,
        imported_at: row.get(8)?,
        format: {
            let f: String = row.get(9)?;
            ModelFormat::parse(&f).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    9,
                    rusqlite::types::Type::Text,
                    "unknown model format".into(),
                )
            })?
        },
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate::run(&mut conn, migrate::SQLITE)?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "query_only", true)?;
        // Statements are prepared once per connection: parsing SQL was a tenth of a request's
        // CPU time in the gateway benchmark.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
        })
    }

    pub(crate) fn read(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for SqliteStore {
    fn insert_model(&self, m: &ModelRecord) -> Result<(), StoreError> {
        let ctx = m
            .context_length
            .map(|c| to_i64(c, "context length"))
            .transpose()?;
        let result = self.conn().prepare_cached(&format!(
                "INSERT INTO models ({MODEL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?.execute(
            params![
                m.name,
                m.digest,
                m.architecture,
                to_i64(m.parameters, "parameter count")?,
                ctx,
                m.chat_template,
                to_i64(m.size_bytes, "size")?,
                m.label,
                m.imported_at,
                m.format.as_str()
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation
                    && e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Err(StoreError::DuplicateModel(m.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn get_model(&self, name: &str) -> Result<Option<ModelRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {MODEL_COLUMNS} FROM models WHERE name = ?1"
            ))?
            .query_row(params![name], from_row)
            .optional()?)
    }

    fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name"))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn remove_model(&self, name: &str) -> Result<ModelRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let record = tx
            .prepare_cached(&format!(
                "SELECT {MODEL_COLUMNS} FROM models WHERE name = ?1"
            ))?
            .query_row(params![name], from_row)
            .optional()?
            .ok_or_else(|| StoreError::UnknownModel(name.to_owned()))?;
        tx.prepare_cached("DELETE FROM models WHERE name = ?1")?
            .execute(params![name])?;
        tx.commit()?;
        Ok(record)
    }

    fn set_model_label(&self, name: &str, label: &str) -> Result<ModelRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx
            .prepare_cached("UPDATE models SET label = ?2 WHERE name = ?1")?
            .execute(params![name, label])?;
        if n == 0 {
            return Err(StoreError::UnknownModel(name.to_owned()));
        }
        let record = tx
            .prepare_cached(&format!(
                "SELECT {MODEL_COLUMNS} FROM models WHERE name = ?1"
            ))?
            .query_row(params![name], from_row)?;
        tx.commit()?;
        Ok(record)
    }

    fn count_digest_refs(&self, digest: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM models WHERE digest = ?1")?
            .query_row(params![digest], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ModelRecord {
        ModelRecord {
            name: name.to_owned(),
            digest: "a".repeat(64),
            architecture: Some("llama".into()),
            parameters: 134_515_008,
            context_length: Some(8192),
            chat_template: Some("{{ messages }}".into()),
            size_bytes: 98_362_432,
            label: "UNCLASSIFIED".into(),
            format: ModelFormat::Gguf,
            imported_at: "2026-11-22T00:00:00Z".into(),
        }
    }

    #[test]
    fn insert_get_list_remove_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&tmp.path().join("db")).unwrap();
        store.insert_model(&record("b")).unwrap();
        store.insert_model(&record("a")).unwrap();
        assert!(
            matches!(store.insert_model(&record("a")), Err(StoreError::DuplicateModel(n)) if n == "a")
        );
        assert_eq!(store.get_model("a").unwrap(), Some(record("a")));
        let names: Vec<_> = store
            .list_models()
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(store.count_digest_refs(&"a".repeat(64)).unwrap(), 2);
        assert_eq!(store.remove_model("a").unwrap(), record("a"));
        assert!(matches!(
            store.remove_model("a"),
            Err(StoreError::UnknownModel(_))
        ));
        assert_eq!(store.count_digest_refs(&"a".repeat(64)).unwrap(), 1);
    }

    #[test]
    fn names_are_data_not_sql() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&tmp.path().join("db")).unwrap();
        let evil = "x'); DROP TABLE models; --";
        store.insert_model(&record(evil)).unwrap();
        assert_eq!(store.get_model(evil).unwrap().unwrap().name, evil);
        assert_eq!(store.list_models().unwrap().len(), 1);
    }
}
