//! Versioned migrations: each file runs once, in order, inside one transaction with the row
//! that records it, so a crash leaves either the old or the new schema and never half of one.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// SQLite migrations in order; the index + 1 is the version.
pub(crate) const SQLITE: &[(&str, &str)] = &[
    (
        "0001_models",
        include_str!("../migrations/sqlite/0001_models.sql"),
    ),
    (
        "0002_identity",
        include_str!("../migrations/sqlite/0002_identity.sql"),
    ),
    (
        "0003_labels",
        include_str!("../migrations/sqlite/0003_labels.sql"),
    ),
    (
        "0004_metering",
        include_str!("../migrations/sqlite/0004_metering.sql"),
    ),
    (
        "0005_aws_keys",
        include_str!("../migrations/sqlite/0005_aws_keys.sql"),
    ),
    (
        "0006_model_format",
        include_str!("../migrations/sqlite/0006_model_format.sql"),
    ),
    (
        "0007_agency_nationality",
        include_str!("../migrations/sqlite/0007_agency_nationality.sql"),
    ),
    (
        "0008_key_parent",
        include_str!("../migrations/sqlite/0008_key_parent.sql"),
    ),
];

pub(crate) fn run(conn: &mut Connection, migrations: &[(&str, &str)]) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY NOT NULL,
             name TEXT NOT NULL,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         ) STRICT;",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = migrations.len() as i64;
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    // The digest of each applied migration's text: a migration edited after a database ran it
    // would leave that database with a schema no release describes, so refuse to start.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migration_digests (
             version INTEGER PRIMARY KEY NOT NULL,
             sha256 TEXT NOT NULL
         ) STRICT;",
    )?;
    for (i, (name, sql)) in migrations.iter().enumerate() {
        let version = i as i64 + 1;
        let digest = hex::encode(Sha256::digest(sql.as_bytes()));
        if version <= current {
            let stored: Option<String> = conn
                .query_row(
                    "SELECT sha256 FROM schema_migration_digests WHERE version = ?1",
                    params![version],
                    |r| r.get(0),
                )
                .optional()?;
            match stored {
                Some(s) if s != digest => {
                    return Err(StoreError::Corrupt(format!(
                        "migration {name} was changed after this database applied it"
                    )))
                }
                Some(_) => {}
                // Applied before digests were kept: remember it from now on.
                None => {
                    conn.execute(
                        "INSERT INTO schema_migration_digests (version, sha256) VALUES (?1, ?2)",
                        params![version, digest],
                    )?;
                }
            }
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            params![version, name],
        )?;
        tx.execute(
            "INSERT INTO schema_migration_digests (version, sha256) VALUES (?1, ?2)",
            params![version, digest],
        )?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        run(&mut conn, SQLITE).unwrap();
        run(&mut conn, SQLITE).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, SQLITE.len() as i64);
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')",
            [],
        )
        .unwrap();
        assert!(matches!(
            run(&mut conn, SQLITE),
            Err(StoreError::SchemaTooNew { found: 999, .. })
        ));
    }

    #[test]
    fn a_migration_edited_after_it_ran_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        let v1: &[(&str, &str)] = &[("0001_t", "CREATE TABLE t (x INTEGER);")];
        run(&mut conn, v1).unwrap();
        let edited: &[(&str, &str)] = &[("0001_t", "CREATE TABLE t (x INTEGER, y INTEGER);")];
        assert!(matches!(
            run(&mut conn, edited),
            Err(StoreError::Corrupt(_))
        ));
        run(&mut conn, v1).unwrap();
    }

    #[test]
    fn a_failing_migration_leaves_nothing_behind() {
        let mut conn = Connection::open_in_memory().unwrap();
        let bad: &[(&str, &str)] = &[(
            "0001_bad",
            "CREATE TABLE t (x INTEGER); SELECT * FROM missing;",
        )];
        assert!(run(&mut conn, bad).is_err());
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }
}
