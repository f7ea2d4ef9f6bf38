//! Query family: every secret sealed at rest, for re-encryption under a new key
//! (`loop-gateway admin rotate-key`). A new sealed column must be listed here.

use rusqlite::Connection;

use super::StoreError;
use crate::secrets::SecretBox;

/// (table, key column, sealed column, the context the column's values are bound to)
const SEALED: &[(&str, &str, &str, &str)] = &[
    (
        "webhooks",
        "id",
        "signing_secret",
        "webhooks.signing_secret",
    ),
    ("agent_groups", "id", "api_key", "agent_groups.api_key"),
    ("channels", "id", "secrets", "channels.secrets"),
];

/// Re-encrypt every sealed value from `old` to `new` in one transaction; returns how many.
/// Fails without changing anything if any value does not open with `old`.
pub fn reseal_all(
    conn: &mut Connection,
    old: &SecretBox,
    new: &SecretBox,
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let mut count = 0;
    for (table, key, column, context) in SEALED {
        let rows: Vec<(String, String)> = tx
            .prepare(&format!(
                "SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL"
            ))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, sealed) in rows {
            let plain = old
                .open(context, &sealed)
                .map_err(|e| StoreError::Conflict(format!("{table}.{column} of {id}: {e}")))?;
            tx.execute(
                &format!("UPDATE {table} SET {column} = ?1 WHERE {key} = ?2"),
                rusqlite::params![new.seal(context, &plain), id],
            )?;
            count += 1;
        }
    }
    tx.commit()?;
    Ok(count)
}
