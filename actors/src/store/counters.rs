//! Statement and commit counters over every pooled connection, so benchmarks can report the
//! SQLite work per run. Counting costs one relaxed atomic add per statement.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::Connection;
use serde::Serialize;

static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static COMMITS: AtomicU64 = AtomicU64::new(0);

fn on_trace(_: TraceEvent<'_>) {
    STATEMENTS.fetch_add(1, Ordering::Relaxed);
}

/// Count this connection's statements (each one reported once, when it finishes) and commits.
pub fn install(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.trace_v2(TraceEventCodes::SQLITE_TRACE_PROFILE, Some(on_trace));
    conn.commit_hook(Some(|| {
        COMMITS.fetch_add(1, Ordering::Relaxed);
        false
    }))
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct StoreCounters {
    pub statements: u64,
    /// Write transactions (an autocommitted write counts as one).
    pub commits: u64,
}

pub fn read() -> StoreCounters {
    StoreCounters {
        statements: STATEMENTS.load(Ordering::Relaxed),
        commits: COMMITS.load(Ordering::Relaxed),
    }
}
