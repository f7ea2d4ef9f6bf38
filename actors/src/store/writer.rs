//! The store's writer: every write of the gateway goes through one thread that owns the
//! writer connection and commits in batches (group commit). The thread takes the first write
//! that arrives and every other one already queued behind it (up to a limit) into one
//! transaction, so under load hundreds of small writes share a commit, while a quiet gateway
//! still commits each write at once. Each write of a batch runs in a savepoint of its own (a
//! write alone needs none): a failing one is undone alone and its caller gets its error;
//! callers hear back only after the commit. Transaction statements are prepared once.
//! Writes are applied in the order they were sent.

use std::sync::mpsc;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{guarded, StoreError};

/// Largest number of writes in one transaction.
const MAX_BATCH: usize = 1024;

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: runs on the writer connection, says whether it succeeded, and returns what to do
/// once the batch has committed (or failed to).
type Op = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

/// The sending side of the writer thread; cheap to clone.
#[derive(Clone)]
pub struct StoreWriter {
    ops: mpsc::Sender<Op>,
}

impl StoreWriter {
    /// Start the writer thread on `conn`.
    pub(super) fn start(conn: r2d2::PooledConnection<SqliteConnectionManager>) -> StoreWriter {
        let (tx, rx) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx))
            .expect("start the store writer thread");
        StoreWriter { ops: tx }
    }

    /// Queue the write `f`; the future resolves with its result after its batch commits.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let result = guarded(|| f(conn));
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Commit(e)),
                });
            });
            (ok, finish)
        });
        let sent = self.ops.send(op).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Panic("the store writer stopped".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Panic("the store writer stopped".into())))
        }
    }
}

impl StoreWriter {
    /// Queue the write `f` without waiting for it; a failure is logged.
    pub fn submit_detached<T: 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) {
        let op: Op = Box::new(move |conn| {
            let error = guarded(|| f(conn)).err().map(|e| e.to_string());
            let ok = error.is_none();
            let finish: Finish = Box::new(move |commit| {
                if let Some(e) = error.or(commit.err()) {
                    tracing::error!(error = %e, "a store write failed");
                }
            });
            (ok, finish)
        });
        if self.ops.send(op).is_err() {
            tracing::error!("the store writer stopped; a write was dropped");
        }
    }
}

/// The writer thread: batch, apply, commit, answer; until every sender is gone.
fn run(conn: r2d2::PooledConnection<SqliteConnectionManager>, ops: mpsc::Receiver<Op>) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        batch.extend(ops.try_iter().take(MAX_BATCH - 1));
        apply(&conn, batch);
    }
}

fn apply(conn: &Connection, batch: Vec<Op>) {
    if let Err(e) = run_cached(conn, "BEGIN IMMEDIATE") {
        // Run each write on its own then: the batch cannot be one transaction.
        tracing::error!(error = %e, "store writer could not begin a transaction");
        for op in batch {
            let (_, finish) = op(conn);
            finish(Ok(()));
        }
        return;
    }
    // A write alone in its batch needs no savepoint: if it fails, the transaction is undone.
    let alone = batch.len() == 1;
    let mut all_ok = true;
    let mut finishers = Vec::with_capacity(batch.len());
    for op in batch {
        let savepoint = !alone && run_cached(conn, "SAVEPOINT w").is_ok();
        let (ok, finish) = op(conn);
        all_ok &= ok;
        if savepoint {
            let end = if ok {
                run_cached(conn, "RELEASE w")
            } else {
                run_cached(conn, "ROLLBACK TO w").and_then(|_| run_cached(conn, "RELEASE w"))
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "store writer savepoint");
            }
        }
        finishers.push(finish);
    }
    let commit = if alone && !all_ok {
        // The one write failed and reports its own error; nothing of it is kept.
        if let Err(e) = run_cached(conn, "ROLLBACK") {
            tracing::error!(error = %e, "store writer rollback failed");
        }
        Ok(())
    } else {
        run_cached(conn, "COMMIT").map_err(|e| {
            let _ = run_cached(conn, "ROLLBACK");
            tracing::error!(error = %e, "store writer commit failed");
            e.to_string()
        })
    };
    for finish in finishers {
        finish(commit.clone());
    }
}

/// A transaction-control statement, prepared once per connection (not parsed per batch).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A write inserting `value` into `t` and then failing if `fail`; its outcome lands in
    /// `outcomes`.
    fn insert(value: i64, fail: bool, outcomes: &Arc<Mutex<Vec<(i64, bool)>>>) -> Op {
        let outcomes = outcomes.clone();
        Box::new(move |conn| {
            let inserted = conn
                .execute("INSERT INTO t (v) VALUES (?1)", [value])
                .is_ok();
            let ok = inserted && !fail;
            let finish: Finish = Box::new(move |commit| {
                outcomes.lock().unwrap().push((value, ok && commit.is_ok()));
            });
            (ok, finish)
        })
    }

    fn values(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn a_failed_write_is_undone_alone_or_in_a_batch() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let outcomes = Arc::new(Mutex::new(Vec::new()));

        // Alone: its insert is rolled back, and it hears that it failed.
        apply(&conn, vec![insert(1, true, &outcomes)]);
        assert_eq!(values(&conn), Vec::<i64>::new());
        // Alone and fine: committed.
        apply(&conn, vec![insert(2, false, &outcomes)]);
        assert_eq!(values(&conn), vec![2]);
        // In a batch: only the failing write is undone; the others commit.
        apply(
            &conn,
            vec![
                insert(3, false, &outcomes),
                insert(4, true, &outcomes),
                insert(5, false, &outcomes),
            ],
        );
        assert_eq!(values(&conn), vec![2, 3, 5]);
        assert_eq!(
            *outcomes.lock().unwrap(),
            vec![(1, false), (2, true), (3, true), (4, false), (5, true)]
        );
        // The connection is not left inside a transaction.
        assert!(conn.is_autocommit());
    }
}
