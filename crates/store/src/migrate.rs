//! Versioned migrations: each file runs once, in order, inside one transaction with the row
//! that records it, so a crash leaves either the old or the new schema and never half of one.

use rusqlite::{params, Connection};

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
    for (i, (name, sql)) in migrations.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            params![i as i64 + 1, name],
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
