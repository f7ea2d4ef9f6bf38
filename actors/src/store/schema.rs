//! Schema migrations. `schema.sql` is the whole schema as a sequence of numbered migrations
//! (`-- migration: N`); `PRAGMA user_version` records the last one applied.

use rusqlite::Connection;

use super::StoreError;

/// The schema file, compiled into the binary.
pub const SCHEMA_SQL: &str = include_str!("../../../schema.sql");

/// The migrations of schema.sql, in order: (version, sql).
pub fn migrations() -> Vec<(i64, &'static str)> {
    let mut out: Vec<(i64, &'static str)> = Vec::new();
    // Markers count only at the start of a line.
    let mut rest = SCHEMA_SQL;
    const MARK: &str = "\n-- migration: ";
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let version: i64 = after[..line_end]
            .trim()
            .parse()
            .expect("schema.sql: migration markers carry a number");
        let body_start = &after[line_end..];
        let body_len = body_start.find(MARK).unwrap_or(body_start.len());
        out.push((version, &body_start[..body_len]));
        rest = &body_start[body_len..];
    }
    out
}

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    migrations().last().map(|m| m.0).unwrap_or(0)
}

/// Apply every migration above the file's `user_version`, each in its own transaction.
/// Returns the versions applied. A file from a newer build is refused untouched.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<Vec<i64>, StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found: current,
            supported: latest,
        });
    }
    let mut applied = Vec::new();
    for (version, sql) in migrations() {
        if version <= current {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
        applied.push(version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        let m = migrations();
        assert!(!m.is_empty());
        for (i, (v, sql)) in m.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1, "migrations are 1, 2, 3, ...");
            let statements = sql
                .lines()
                .map(str::trim)
                .any(|l| !l.is_empty() && !l.starts_with("--"));
            assert!(statements, "migration {v} is not empty");
        }
    }

    #[test]
    fn migrate_is_idempotent_and_refuses_newer_files() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut conn, ":memory:").unwrap().len(),
            migrations().len()
        );
        assert!(migrate(&mut conn, ":memory:").unwrap().is_empty());
        conn.pragma_update(None, "user_version", latest_version() + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn, ":memory:"),
            Err(StoreError::TooNew { .. })
        ));
    }
}
