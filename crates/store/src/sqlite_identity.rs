//! The SQLite implementation of [`IdentityStore`]. Every statement is parameterized; the only
//! text spliced into SQL is the constant column lists below.

use highside_identity::{
    AgencyId, CertMappingId, KeyHash, KeyId, KeyKind, KeyPrefix, KeySalt, Nationality, RoleSet,
    UserId,
};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::identity::{
    AgencyRecord, ApiKeyRecord, CertMappingRecord, IdentityStore, Page, Scope, UserRecord,
};
use crate::{SqliteStore, StoreError};

const AGENCY: &str = "id, name, branch, status, created_at, updated_at, pii_action, nationality";
const USER: &str =
    "id, agency_id, name, clearance, nationality, roles, status, created_at, updated_at";
const KEY: &str = "k.id, k.prefix, k.secret_hash, k.user_id, k.name, k.scopes, k.expires_at, \
                   k.created_at, k.created_by, k.last_used_at, k.revoked_at, k.kind, k.salt, \
                   k.parent_key_id";
const MAPPING: &str = "m.id, m.user_id, m.kind, m.value, m.created_at";

/// A stored value that does not parse is corruption, reported as a conversion failure.
fn parsed<T>(
    row: &Row<'_>,
    i: usize,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(i)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            format!("unexpected value in column {i}").into(),
        )
    })
}

fn agency_row(r: &Row<'_>) -> rusqlite::Result<AgencyRecord> {
    Ok(AgencyRecord {
        id: parsed(r, 0, AgencyId::parse)?,
        name: r.get(1)?,
        branch: parsed(r, 2, |s| s.parse().ok())?,
        status: parsed(r, 3, |s| s.parse().ok())?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        pii_action: r.get(6)?,
        nationality: match r.get::<_, Option<String>>(7)? {
            None => None,
            Some(_) => Some(parsed(r, 7, |s| Nationality::parse(s).ok())?),
        },
    })
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: parsed(r, 0, UserId::parse)?,
        agency_id: parsed(r, 1, AgencyId::parse)?,
        name: r.get(2)?,
        clearance: r.get(3)?,
        nationality: parsed(r, 4, |s| Nationality::parse(s).ok())?,
        roles: parsed(r, 5, |s| RoleSet::parse_list(s).ok())?,
        status: parsed(r, 6, |s| s.parse().ok())?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: parsed(r, 0, KeyId::parse)?,
        prefix: parsed(r, 1, KeyPrefix::parse)?,
        secret_hash: parsed(r, 2, KeyHash::from_hex)?,
        user_id: parsed(r, 3, UserId::parse)?,
        name: r.get(4)?,
        scopes: parsed(r, 5, |s| RoleSet::parse_list(s).ok())?,
        expires_at: r.get(6)?,
        created_at: r.get(7)?,
        created_by: parsed(r, 8, UserId::parse)?,
        last_used_at: r.get(9)?,
        revoked_at: r.get(10)?,
        kind: parsed(r, 11, KeyKind::parse)?,
        salt: match r.get::<_, Option<String>>(12)? {
            None => None,
            Some(_) => Some(parsed(r, 12, KeySalt::from_hex)?),
        },
        parent: match r.get::<_, Option<String>>(13)? {
            None => None,
            Some(_) => Some(parsed(r, 13, KeyId::parse)?),
        },
    })
    .and_then(|k| {
        // An AWS pair without its salt (or a bearer key with one) is corruption.
        if (k.kind == KeyKind::Aws) == k.salt.is_some() {
            Ok(k)
        } else {
            Err(rusqlite::Error::FromSqlConversionFailure(
                12,
                Type::Text,
                "a key's kind and salt disagree".into(),
            ))
        }
    })
}

fn mapping_row(r: &Row<'_>) -> rusqlite::Result<CertMappingRecord> {
    Ok(CertMappingRecord {
        id: parsed(r, 0, CertMappingId::parse)?,
        user_id: parsed(r, 1, UserId::parse)?,
        kind: parsed(r, 2, |s| s.parse().ok())?,
        value: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// Maps a UNIQUE violation to [`StoreError::Duplicate`] naming `what`.
fn unique(what: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Duplicate(what.to_owned())
        }
        _ => e.into(),
    }
}

fn limit(page: &Page) -> i64 {
    i64::from(page.limit.max(1))
}

fn changed(n: usize, what: &str) -> Result<(), StoreError> {
    if n == 0 {
        Err(StoreError::NotFound(what.to_owned()))
    } else {
        Ok(())
    }
}

fn insert_agency(c: &Connection, a: &AgencyRecord) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO agencies ({AGENCY}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        a.id.as_str(),
        a.name,
        a.branch.as_str(),
        a.status.as_str(),
        a.created_at,
        a.updated_at,
        a.pii_action,
        a.nationality.map(Nationality::as_str)
    ])
    .map_err(unique("an agency with this name"))?;
    Ok(())
}

fn insert_user(c: &Connection, u: &UserRecord) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO users ({USER}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))?
    .execute(params![
        u.id.as_str(),
        u.agency_id.as_str(),
        u.name,
        u.clearance,
        u.nationality.as_str(),
        u.roles.to_list(),
        u.status.as_str(),
        u.created_at,
        u.updated_at
    ])
    .map_err(unique("a user with this name in this agency"))?;
    Ok(())
}

fn insert_key(c: &Connection, k: &ApiKeyRecord) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO api_keys (id, prefix, secret_hash, user_id, name, scopes, expires_at, \
         created_at, created_by, last_used_at, revoked_at, kind, salt, parent_key_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        k.id.as_str(),
        k.prefix.as_str(),
        k.secret_hash.to_hex(),
        k.user_id.as_str(),
        k.name,
        k.scopes.to_list(),
        k.expires_at,
        k.created_at,
        k.created_by.as_str(),
        k.last_used_at,
        k.revoked_at,
        k.kind.as_str(),
        k.salt.as_ref().map(KeySalt::to_hex),
        k.parent.as_ref().map(KeyId::as_str)
    ])
    .map_err(unique("a key with this prefix"))?;
    Ok(())
}

impl IdentityStore for SqliteStore {
    fn bootstrap(
        &self,
        agency: &AgencyRecord,
        user: &UserRecord,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        // IMMEDIATE: two concurrent `init`s cannot both see an empty users table.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let users: i64 = tx
            .prepare_cached("SELECT COUNT(*) FROM users")?
            .query_row([], |r| r.get(0))?;
        if users > 0 {
            return Err(StoreError::AlreadyBootstrapped);
        }
        insert_agency(&tx, agency)?;
        insert_user(&tx, user)?;
        insert_key(&tx, key)?;
        tx.commit()?;
        Ok(())
    }

    fn insert_agency(&self, agency: &AgencyRecord) -> Result<(), StoreError> {
        insert_agency(&self.conn(), agency)
    }

    fn get_agency(&self, id: &AgencyId) -> Result<Option<AgencyRecord>, StoreError> {
        Ok(self
            .read()
            .prepare_cached(&format!("SELECT {AGENCY} FROM agencies WHERE id = ?1"))?
            .query_row(params![id.as_str()], agency_row)
            .optional()?)
    }

    fn list_agencies(
        &self,
        only: Option<&AgencyId>,
        page: &Page,
    ) -> Result<Vec<AgencyRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {AGENCY} FROM agencies WHERE (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR id > ?2) \
             ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![only.map(AgencyId::as_str), page.after, limit(page)],
            agency_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_agency(&self, a: &AgencyRecord) -> Result<(), StoreError> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE agencies SET name = ?2, branch = ?3, status = ?4, updated_at = ?5, \
                 pii_action = ?6, nationality = ?7 WHERE id = ?1",
            )?
            .execute(params![
                a.id.as_str(),
                a.name,
                a.branch.as_str(),
                a.status.as_str(),
                a.updated_at,
                a.pii_action,
                a.nationality.map(Nationality::as_str)
            ])
            .map_err(unique("an agency with this name"))?;
        changed(n, "agency")
    }

    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        insert_user(&self.conn(), user)
    }

    fn get_user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .read()
            .prepare_cached(&format!("SELECT {USER} FROM users WHERE id = ?1"))?
            .query_row(params![id.as_str()], user_row)
            .optional()?)
    }

    fn list_users(&self, scope: &Scope, page: &Page) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {USER} FROM users WHERE (?1 IS NULL OR agency_id = ?1) AND (?2 IS NULL OR id = ?2) \
             AND (?3 IS NULL OR id > ?3) ORDER BY id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![
                scope.agency.as_ref().map(AgencyId::as_str),
                scope.user.as_ref().map(UserId::as_str),
                page.after,
                limit(page)
            ],
            user_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn update_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE users SET name = ?2, clearance = ?3, nationality = ?4, roles = ?5, \
                 status = ?6, updated_at = ?7 WHERE id = ?1",
            )?
            .execute(params![
                u.id.as_str(),
                u.name,
                u.clearance,
                u.nationality.as_str(),
                u.roles.to_list(),
                u.status.as_str(),
                u.updated_at
            ])
            .map_err(unique("a user with this name in this agency"))?;
        changed(n, "user")
    }

    fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        insert_key(&self.conn(), key)
    }

    fn get_key(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!("SELECT {KEY} FROM api_keys k WHERE k.id = ?1"))?
            .query_row(params![id.as_str()], key_row)
            .optional()?)
    }

    fn find_key(&self, prefix: &KeyPrefix) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self
            .read()
            .prepare_cached(&format!("SELECT {KEY} FROM api_keys k WHERE k.prefix = ?1"))?
            .query_row(params![prefix.as_str()], key_row)
            .optional()?)
    }

    fn list_keys(&self, scope: &Scope, page: &Page) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY} FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE (?1 IS NULL OR u.agency_id = ?1) AND (?2 IS NULL OR k.user_id = ?2) \
             AND (?3 IS NULL OR k.id > ?3) ORDER BY k.id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![
                scope.agency.as_ref().map(AgencyId::as_str),
                scope.user.as_ref().map(UserId::as_str),
                page.after,
                limit(page)
            ],
            key_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_key(&self, id: &KeyId, at: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            )?
            .execute(params![id.as_str(), at])?;
        changed(n, "key")
    }

    fn touch_key(&self, id: &KeyId, at: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?
            .execute(params![id.as_str(), at])?;
        Ok(())
    }

    fn insert_cert_mapping(&self, m: &CertMappingRecord) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO cert_mappings (id, user_id, kind, value, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                m.id.as_str(),
                m.user_id.as_str(),
                m.kind.as_str(),
                m.value,
                m.created_at
            ])
            .map_err(unique("a mapping for this certificate value"))?;
        Ok(())
    }

    fn get_cert_mapping(
        &self,
        id: &CertMappingId,
    ) -> Result<Option<CertMappingRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {MAPPING} FROM cert_mappings m WHERE m.id = ?1"
            ))?
            .query_row(params![id.as_str()], mapping_row)
            .optional()?)
    }

    fn list_cert_mappings(
        &self,
        scope: &Scope,
        page: &Page,
    ) -> Result<Vec<CertMappingRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MAPPING} FROM cert_mappings m JOIN users u ON u.id = m.user_id \
             WHERE (?1 IS NULL OR u.agency_id = ?1) AND (?2 IS NULL OR m.user_id = ?2) \
             AND (?3 IS NULL OR m.id > ?3) ORDER BY m.id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![
                scope.agency.as_ref().map(AgencyId::as_str),
                scope.user.as_ref().map(UserId::as_str),
                page.after,
                limit(page)
            ],
            mapping_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_cert_mapping(&self, id: &CertMappingId) -> Result<(), StoreError> {
        let n = self
            .conn()
            .prepare_cached("DELETE FROM cert_mappings WHERE id = ?1")?
            .execute(params![id.as_str()])?;
        changed(n, "certificate mapping")
    }

    fn has_own_children(&self, key: &KeyId) -> Result<bool, StoreError> {
        Ok(self
            .read()
            .prepare_cached(
                // Descendants at any depth (through other users' keys too), as deep as
                // authentication walks ancestors.
                "WITH RECURSIVE d (id, user_id, revoked_at, depth) AS ( \
                   SELECT id, user_id, revoked_at, 1 FROM api_keys WHERE parent_key_id = ?1 \
                   UNION ALL \
                   SELECT c.id, c.user_id, c.revoked_at, d.depth + 1 \
                   FROM api_keys c JOIN d ON c.parent_key_id = d.id WHERE d.depth < 33) \
                 SELECT 1 FROM d JOIN api_keys p ON p.id = ?1 \
                 WHERE d.user_id = p.user_id AND d.revoked_at IS NULL LIMIT 1",
            )?
            .query_row(params![key.as_str()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn match_certificate(
        &self,
        subject: &str,
        sans: &[String],
    ) -> Result<Vec<CertMappingRecord>, StoreError> {
        let conn = self.conn();
        let mut out = Vec::new();
        let row = |r: &Row<'_>| Ok((r.get::<_, i64>(5)?, mapping_row(r)?));
        let mut by_subject = conn.prepare_cached(&format!(
            "SELECT {MAPPING}, m.rowid FROM cert_mappings m WHERE m.kind = 'subject' AND m.value = ?1"
        ))?;
        for r in by_subject.query_map(params![subject], row)? {
            out.push(r?);
        }
        let mut by_san = conn.prepare_cached(&format!(
            "SELECT {MAPPING}, m.rowid FROM cert_mappings m WHERE m.kind = 'san' AND m.value = ?1"
        ))?;
        for san in sans {
            for r in by_san.query_map(params![san], row)? {
                out.push(r?);
            }
        }
        // Oldest first: rowids grow with insertion, so the order mappings were made in.
        out.sort_by_key(|(rowid, _)| *rowid);
        out.dedup_by_key(|(rowid, _)| *rowid);
        Ok(out.into_iter().map(|(_, m)| m).collect())
    }
}

#[cfg(test)]
mod tests {
    use highside_identity::{ApiKeySecret, Branch, Role, Status};

    use super::*;

    fn records() -> (AgencyRecord, UserRecord, ApiKeyRecord) {
        let t = "2026-11-23T00:00:00Z".to_owned();
        let agency = AgencyRecord {
            id: AgencyId::generate(),
            name: "x'); DROP TABLE users; --".into(),
            branch: Branch::Judicial,
            status: Status::Active,
            created_at: t.clone(),
            updated_at: t.clone(),
            pii_action: "off".into(),
            nationality: Some(Nationality::parse("AUS").unwrap()),
        };
        let user = UserRecord {
            id: UserId::generate(),
            agency_id: agency.id.clone(),
            name: "Robert'); DELETE FROM api_keys; --".into(),
            clearance: "TOP SECRET//SI".into(),
            nationality: Nationality::parse("AUS").unwrap(),
            roles: [Role::Operator].into_iter().collect(),
            status: Status::Active,
            created_at: t.clone(),
            updated_at: t.clone(),
        };
        let (prefix, secret) = ApiKeySecret::generate();
        let key = ApiKeyRecord {
            id: KeyId::generate(),
            prefix,
            secret_hash: secret.hash(),
            user_id: user.id.clone(),
            name: "k".into(),
            scopes: user.roles,
            expires_at: None,
            created_at: t.clone(),
            created_by: user.id.clone(),
            last_used_at: None,
            revoked_at: None,
            kind: KeyKind::Bearer,
            salt: None,
            parent: None,
        };
        (agency, user, key)
    }

    #[test]
    fn names_are_data_and_rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let (agency, user, key) = records();
        store.bootstrap(&agency, &user, &key).unwrap();
        assert!(matches!(
            store.bootstrap(&agency, &user, &key),
            Err(StoreError::AlreadyBootstrapped)
        ));
        assert_eq!(store.get_agency(&agency.id).unwrap().unwrap(), agency);
        assert_eq!(store.get_user(&user.id).unwrap().unwrap(), user);
        let found = store.find_key(&key.prefix).unwrap().unwrap();
        assert!(found.secret_hash.matches(&key.secret_hash));
        let page = Page {
            limit: 10,
            after: Some("zz' OR 1=1 --".into()),
        };
        assert!(store
            .list_users(&Scope::default(), &page)
            .unwrap()
            .is_empty());
        store.revoke_key(&key.id, "2026-11-23T01:00:00Z").unwrap();
        store.revoke_key(&key.id, "2026-11-23T02:00:00Z").unwrap();
        let revoked = store.get_key(&key.id).unwrap().unwrap();
        assert_eq!(
            revoked.revoked_at.as_deref(),
            Some("2026-11-23T01:00:00Z"),
            "first revocation stays"
        );
    }

    #[test]
    fn a_corrupt_row_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let (agency, user, key) = records();
        store.bootstrap(&agency, &user, &key).unwrap();
        store
            .conn()
            .execute(
                "UPDATE users SET roles = 'operator,god' WHERE id = ?1",
                params![user.id.as_str()],
            )
            .unwrap();
        assert!(store.get_user(&user.id).is_err());
        store
            .conn()
            .execute(
                "UPDATE users SET roles = 'operator', nationality = '1x!' WHERE id = ?1",
                params![user.id.as_str()],
            )
            .unwrap();
        assert!(store.get_user(&user.id).is_err());
    }
}
