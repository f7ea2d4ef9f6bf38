//! `StoreWriter`: every write of the gateway goes through here and is committed in batches
//! (group commit). While one batch is being written on the writer thread, the writes that
//! arrive queue up and become the next batch, so under load hundreds of small writes share one
//! transaction, and a quiet gateway still commits each write at once. Each write runs in a
//! savepoint of its own: a failing one is undone alone and its caller gets its error; callers
//! hear back only after the commit.

use std::sync::mpsc;

use actix::prelude::*;
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

pub struct StoreWriter {
    queue: Vec<Op>,
    busy: bool,
    thread: Addr<WriterThread>,
}

impl StoreWriter {
    /// Start the writer (its batching actor on an arbiter of its own, its SQLite work on a
    /// thread of its own).
    pub(super) fn start(conn: r2d2::PooledConnection<SqliteConnectionManager>) -> Addr<Self> {
        let thread = SyncArbiter::start(1, {
            // SyncArbiter wants a factory; the one connection is handed over once.
            let (tx, rx) = mpsc::sync_channel(1);
            let _ = tx.send(conn);
            let rx = std::sync::Mutex::new(rx);
            move || WriterThread {
                conn: rx
                    .lock()
                    .ok()
                    .and_then(|r| r.try_recv().ok())
                    .expect("the writer thread starts once"),
            }
        });
        let arbiter = Arbiter::new();
        StoreWriter::start_in_arbiter(&arbiter.handle(), move |_| StoreWriter {
            queue: Vec::new(),
            busy: false,
            thread,
        })
    }

    /// Queue the write `f`; the future resolves with its result after its batch commits.
    pub fn submit<T: Send + 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> ResponseFuture<Result<T, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.queue.push(Box::new(move |conn| {
            let result = guarded(|| f(conn));
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Commit(e)),
                });
            });
            (ok, finish)
        }));
        self.flush(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Panic("the store writer stopped".into())))
        })
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.queue.is_empty() {
            return;
        }
        self.busy = true;
        let rest = if self.queue.len() > MAX_BATCH {
            self.queue.split_off(MAX_BATCH)
        } else {
            Vec::new()
        };
        let batch = std::mem::replace(&mut self.queue, rest);
        self.thread
            .send(ApplyBatch(batch))
            .into_actor(self)
            .map(|_, act, ctx| {
                act.busy = false;
                act.flush(ctx);
            })
            .spawn(ctx);
    }
}

impl Actor for StoreWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Writes arrive in bursts from many runs; awaited sends beyond this wait their turn.
        ctx.set_mailbox_capacity(4096);
    }
}

/// The thread that owns the writer connection.
pub struct WriterThread {
    conn: r2d2::PooledConnection<SqliteConnectionManager>,
}

impl Actor for WriterThread {
    type Context = SyncContext<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct ApplyBatch(Vec<Op>);

impl Handler<ApplyBatch> for WriterThread {
    type Result = ();

    fn handle(&mut self, ApplyBatch(batch): ApplyBatch, _: &mut SyncContext<Self>) {
        let conn: &Connection = &self.conn;
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Run each write on its own then: the batch cannot be one transaction.
            tracing::error!(error = %e, "store writer could not begin a transaction");
            for op in batch {
                let (_, finish) = op(conn);
                finish(Ok(()));
            }
            return;
        }
        let mut finishers = Vec::with_capacity(batch.len());
        for op in batch {
            let savepoint = conn.execute_batch("SAVEPOINT w");
            let (ok, finish) = op(conn);
            if savepoint.is_ok() {
                let end = if ok {
                    "RELEASE w"
                } else {
                    "ROLLBACK TO w; RELEASE w"
                };
                if let Err(e) = conn.execute_batch(end) {
                    tracing::error!(error = %e, "store writer savepoint");
                }
            }
            finishers.push(finish);
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, "store writer commit failed");
            e.to_string()
        });
        for finish in finishers {
            finish(commit.clone());
        }
    }
}
