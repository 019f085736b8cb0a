//! The writer's three threads: the writer itself (group commit), the WAL's syncer, and the
//! checkpointer. See the module above for why the work is shared out this way.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::db;
use crate::store::StoreError;

/// Most jobs committed together. Bounds the latency a large batch adds to its first job.
pub(super) const MAX_BATCH: usize = 512;

/// Jobs waiting for the writer before callers wait to enqueue (back-pressure on ingest).
pub(super) const QUEUE_DEPTH: usize = 4096;

/// WAL size, in pages, that triggers a checkpoint: SQLite's own default. Checkpointing after
/// every commit copies hot index pages again and again; much later, the writer's page
/// look-ups slow down in a long WAL. Both measured worse.
pub(super) const CHECKPOINT_PAGES: std::ffi::c_int = 1000;

/// A unit of work for the writer.
pub(super) trait Work: Send {
    /// Whether its commit must reach the disk before it is answered.
    fn durable(&self) -> bool;
    /// Runs the work in the current transaction, keeping its result; says whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction's fate is known: the kept result if it
    /// committed, the commit's error otherwise.
    fn answer(self: Box<Self>, commit: Result<(), String>);
}

/// A caller's closure, its result, and where to send it.
pub(super) struct Call<R, F> {
    pub(super) work: F,
    pub(super) durable: bool,
    pub(super) result: Option<Result<R, StoreError>>,
    pub(super) reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Work for Call<R, F>
where
    R: Send,
    F: FnMut(&Connection) -> Result<R, StoreError> + Send,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, commit: Result<(), String>) {
        let answer = match commit {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Closed)),
            Err(e) => Err(StoreError::Commit(e.into())),
        };
        let _ = self.reply.send(answer);
    }
}

pub(super) type Job = Box<dyn Work>;

/// What the checkpointer is asked to do.
pub(super) enum Checkpoint {
    /// The WAL has grown: copy it into the database, never blocking the writer.
    Passive,
    /// After an erasure: copy all of it and truncate it, then answer.
    Truncate(oneshot::Sender<Result<(), StoreError>>),
}

/// Copies committed WAL pages into the database file when the writer's WAL has grown past
/// [`CHECKPOINT_PAGES`]. PASSIVE never blocks the writer; a full pass lets the next commit
/// restart the WAL from its beginning, which bounds its size.
///
/// A truncating checkpoint, asked for after an erasure, waits (the busy timeout) for the
/// writer's batch in progress and for readers of older snapshots, and is tried again while
/// they keep it from finishing.
pub(super) fn checkpoint_loop(conn: &Connection, nudged: &std::sync::mpsc::Receiver<Checkpoint>) {
    while let Ok(request) = nudged.recv() {
        match request {
            Checkpoint::Passive => {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will try again after the next commit");
                }
            }
            Checkpoint::Truncate(done) => {
                let mut result = Err(StoreError::Commit("the WAL stayed busy".into()));
                for _ in 0..20 {
                    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        r.get::<_, i64>(0)
                    }) {
                        Ok(0) => {
                            result = Ok(());
                            break;
                        }
                        Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                        Err(e) => {
                            result = Err(db(e));
                            break;
                        }
                    }
                }
                let _ = done.send(result);
            }
        }
    }
    // The writer is gone: fold the WAL back into the database before exiting.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// The WAL file of the database at `path`, as SQLite names it.
pub(super) fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Makes committed batches durable: takes every batch committed since the last sync, syncs
/// the WAL once (which covers every frame written before it, whoever wrote it), then
/// answers their jobs. A failed sync fails them: their chats were not acknowledged, so the
/// senders resend, and the resends find them stored.
pub(super) fn sync_loop(wal: &std::fs::File, waiting: &std::sync::mpsc::Receiver<Vec<Job>>) {
    while let Ok(mut jobs) = waiting.recv() {
        while let Ok(more) = waiting.try_recv() {
            jobs.extend(more);
        }
        let synced = wal
            .sync_data()
            .map_err(|e| format!("cannot sync the WAL to disk: {e}"));
        if let Err(e) = &synced {
            tracing::error!(error = %e, "store sync failed");
        }
        for job in jobs {
            job.answer(synced.clone());
        }
    }
}

/// The writer: drains waiting jobs, commits them together, answers. With a `syncer`
/// (`synchronous = full`), durable jobs are answered by it once their frames are on disk,
/// while the writer goes on with the next batch; soft work (leases) is answered at once.
pub(super) fn write_loop(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Job>,
    syncer: Option<std::sync::mpsc::Sender<Vec<Job>>>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = commit(&mut conn, batch);
        let Some(syncer) = &syncer else {
            committed.into_iter().for_each(|job| job.answer(Ok(())));
            continue;
        };
        let (soft, durable): (Vec<Job>, Vec<Job>) =
            committed.into_iter().partition(|job| !job.durable());
        soft.into_iter().for_each(|job| job.answer(Ok(())));
        if !durable.is_empty()
            && let Err(std::sync::mpsc::SendError(jobs)) = syncer.send(durable)
        {
            for job in jobs {
                job.answer(Err("the store's sync thread has stopped".into()));
            }
        }
    }
}

/// Runs `batch` in one transaction; if one job fails, each runs again in a transaction of
/// its own, so one bad job fails alone. Answers the jobs that failed; returns the committed
/// ones, for the caller to answer.
pub(super) fn commit(conn: &mut Connection, mut batch: Vec<Job>) -> Vec<Job> {
    match run_together(conn, &mut batch) {
        Ok(true) => batch,
        Ok(false) => {
            let mut committed = Vec::with_capacity(batch.len());
            for mut job in batch {
                match run_together(conn, std::slice::from_mut(&mut job)) {
                    Ok(true) => committed.push(job),
                    // Its own error is the answer it keeps.
                    Ok(false) => job.answer(Ok(())),
                    Err(e) => job.answer(Err(e)),
                }
            }
            committed
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed");
            batch.into_iter().for_each(|job| job.answer(Err(e.clone())));
            Vec::new()
        }
    }
}

/// Runs `jobs` in one transaction: `Ok(true)` committed, `Ok(false)` a job failed and
/// nothing was kept, `Err` the transaction itself failed.
pub(super) fn run_together(conn: &mut Connection, jobs: &mut [Job]) -> Result<bool, String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    for job in jobs.iter_mut() {
        if !job.run(&tx) {
            return Ok(false); // dropping `tx` rolls back
        }
    }
    tx.commit().map(|()| true).map_err(|e| e.to_string())
}
