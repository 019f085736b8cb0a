//! The default store: one SQLite file in WAL mode, written by one thread with group commit.
//!
//! Why one writer thread and rusqlite rather than a pool: SQLite allows one writer at a
//! time anyway, and durability costs one fsync per commit. The writer takes every job that
//! is waiting (up to [`MAX_BATCH`]), runs them all in one transaction and commits once;
//! under load many acknowledgements share one commit, and when idle a job commits alone with
//! no added delay. If a job fails, the batch is rolled back and each job
//! runs again in a transaction of its own, so one failure cannot spoil its neighbours; jobs
//! are plain database work on owned data, so running one again is safe. (Savepoints per job
//! would isolate failures too, but cost two statements and page copies on every job for a
//! case that almost never happens. sqlx's SQLite driver also runs a thread per connection
//! behind a channel, but gives no way to share a transaction across callers.)
//!
//! The fsync is not the writer's: commits run at `synchronous = NORMAL`, which in WAL mode
//! appends the frames without syncing them, and a third thread syncs the WAL file and only
//! then answers the jobs committed before the sync began (`PRAGMA synchronous = FULL` would
//! sync inside the commit, holding the one writer idle for the disk). So the writer runs the
//! next batch while the disk syncs the last, and one sync may cover several commits. Leases
//! need no sync (a lease lost in a power cut only lets a delivery be leased again): they are
//! answered as soon as their batch commits. What is answered is on disk exactly as with
//! `FULL`; what a reader sees may be committed a moment before it is synced, so a chat can be
//! delivered, then lost with the machine's power before its sender was answered; the sender
//! resends it and the target sees the same idempotency key again: at least once, as always.
//!
//! Checkpoints (copying the WAL back into the database file) run on a second thread with its
//! own connection, nudged once the WAL holds [`CHECKPOINT_PAGES`] pages, instead of inside
//! the commit that crosses that size as SQLite does by default: they are a large part of the
//! writer's time otherwise, and the writer is the one serial step of ingest.
//!
//! Reads that only look (listings, searches, counts, a conversation's detail) run on
//! connections of their own, on blocking threads, each in one read transaction: WAL gives
//! each a snapshot while the writer goes on, so a search through a year of chats never holds
//! an acknowledgement back. Reads that decide a write (the duplicate check, a lease) stay on
//! the writer, inside its transaction. Other processes (the CLI) open their own connection;
//! WAL lets them read while we write, and `busy_timeout` makes their writes wait their turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    AttemptOutcome, AttemptRecord, AttemptRow, Blanked, ConnectorStats, ConversationCursor,
    ConversationFilter, ConversationRow, DeliveryFilter, DeliveryRow, DeliveryState, Doomed,
    ERASED, FilterSql, FilterValue, ForgetBatch, ForgetReport, IngestOutcome, LeasedDelivery,
    NewSession, NewVersion, NextState, Packed, PurgeBatch, PurgeCutoffs, PurgeReport,
    QuarantineRow, Quarantined, QuarantinedBody, ReplayReport, StateCounts, Store, StoreError,
    VersionRow, from_ms, ms,
};
use crate::config::Synchronous;
use crate::model::{StepOutputs, Timestamp, delivery_key};

/// Most jobs committed together. Bounds the latency a large batch adds to its first job.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer before callers wait to enqueue (back-pressure on ingest).
const QUEUE_DEPTH: usize = 4096;

/// WAL size, in pages, that triggers a checkpoint: SQLite's own default. Checkpointing after
/// every commit copies hot index pages again and again; much later, the writer's page
/// look-ups slow down in a long WAL. Both measured worse.
const CHECKPOINT_PAGES: std::ffi::c_int = 1000;

/// Migrations in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_ledger.sql"),
    include_str!("migrations/sqlite/0003_admin.sql"),
    include_str!("migrations/sqlite/0004_lease_ranges.sql"),
    include_str!("migrations/sqlite/0005_drop_unused_due_index.sql"),
    include_str!("migrations/sqlite/0006_sessions.sql"),
    include_str!("migrations/sqlite/0007_listing_indexes.sql"),
    include_str!("migrations/sqlite/0008_mentions_and_counts.sql"),
    include_str!("migrations/sqlite/0009_packed_versions.sql"),
    include_str!("migrations/sqlite/0010_fewer_queue_indexes.sql"),
];

/// The migration that creates `mentions`: in its transaction, what was stored before is
/// indexed too.
const MENTIONS_MIGRATION: usize = 8;

/// A unit of work for the writer.
trait Work: Send {
    /// Whether its commit must reach the disk before it is answered.
    fn durable(&self) -> bool;
    /// Runs the work in the current transaction, keeping its result; says whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction's fate is known: the kept result if it
    /// committed, the commit's error otherwise.
    fn answer(self: Box<Self>, commit: Result<(), String>);
}

/// A caller's closure, its result, and where to send it.
struct Call<R, F> {
    work: F,
    durable: bool,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
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
            Err(e) => Err(StoreError::Commit(e)),
        };
        let _ = self.reply.send(answer);
    }
}

type Job = Box<dyn Work>;

/// A SQLite-backed [`Store`]. Cheap to clone; all clones share the writer and the readers.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    /// To the checkpointer: a scrub's request to truncate the WAL.
    checkpoints: std::sync::mpsc::SyncSender<Checkpoint>,
    readers: Arc<Readers>,
}

/// Read-only connections, opened when every open one is busy and kept for the next read.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Idle readers kept open; more may be open at once while reads pile up.
const IDLE_READERS: usize = 4;

impl Readers {
    /// Runs `work` in one read transaction on an idle reader (or a new one), on this thread.
    fn run<R>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.path)?;
                conn.execute_batch("PRAGMA query_only = ON")
                    .map_err(|e| StoreError::Open(e.to_string()))?;
                conn
            }
        };
        // One snapshot for all of the work's statements; nothing to commit, so dropping it
        // ends it.
        let result = conn
            .unchecked_transaction()
            .map_err(db)
            .and_then(|tx| work(&tx));
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

/// What the checkpointer is asked to do.
enum Checkpoint {
    /// The WAL has grown: copy it into the database, never blocking the writer.
    Passive,
    /// After an erasure: copy all of it and truncate it, then answer.
    Truncate(oneshot::Sender<Result<(), StoreError>>),
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, applies migrations, starts the writer.
    ///
    /// # Errors
    /// When the file cannot be created or opened, or a migration fails.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = connect(path)?;
        migrate(&conn)?;
        let checkpointer = connect(path)?;
        let (checkpoints, nudged) = std::sync::mpsc::sync_channel::<Checkpoint>(4);
        let nudge = checkpoints.clone();
        // Replaces SQLite's own auto-checkpoint, which would run inside the writer's commit.
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                if pages >= CHECKPOINT_PAGES {
                    // A nudge already waiting covers this commit too.
                    let _ = nudge.try_send(Checkpoint::Passive);
                }
                Ok(())
            },
        ))
        .map_err(|e| StoreError::Open(e.to_string()))?;
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| StoreError::Open(format!("cannot start the {name} thread: {e}")))
        };
        let syncer = match synchronous {
            Synchronous::Normal => None,
            Synchronous::Full => {
                // The WAL exists once a WAL-mode database has been read, as `migrate` did.
                let wal = wal_path(path);
                let wal = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&wal)
                    .map_err(|e| StoreError::Open(format!("{}: {e}", wal.display())))?;
                let (synced, waiting) = std::sync::mpsc::channel::<Vec<Job>>();
                spawn(
                    "chatbridge-sync",
                    Box::new(move || sync_loop(&wal, &waiting)),
                )?;
                Some(synced)
            }
        };
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        spawn(
            "chatbridge-ckpt",
            Box::new(move || checkpoint_loop(&checkpointer, &nudged)),
        )?;
        spawn(
            "chatbridge-store",
            Box::new(move || write_loop(conn, queue, syncer)),
        )?;
        Ok(Self {
            jobs,
            checkpoints,
            readers: Arc::new(Readers {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `work` on a reader, off the writer and off the async threads.
    async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.run(work))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Runs `work` on the writer inside the next batch; returns its result after the commit.
    /// `work` may run twice (see the module docs), so it must only touch the database.
    async fn call<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(work, true).await
    }

    /// As [`SqliteStore::call`], for work whose loss in a power cut costs nothing but a
    /// repeat (leases): a batch of only such work commits without waiting for the disk.
    async fn call_soft<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(work, false).await
    }

    async fn submit<R, F>(&self, work: F, durable: bool) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answered) = oneshot::channel();
        let job: Job = Box::new(Call {
            work,
            durable,
            result: None,
            reply,
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn =
        Connection::open(path).map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    // synchronous = NORMAL: in WAL mode a commit then writes its frames without syncing them;
    // with `store.synchronous = full`, the sync thread syncs them before anyone is answered
    // (see the module docs). temp_store = MEMORY: statement journals and sorts stay off the
    // disk. secure_delete: what retention and `forget` erase is overwritten, not left in free
    // pages; deletes are rare, so the cost is too.
    //
    // page_size (taken when the file is created): every commit writes each page it changed
    // whole, and a batch changes a page or two in each of a dozen indexes; at 4 KiB the
    // writes under load were half those at 16 KiB (25 KB a chat, WAL and checkpoints), for 8%
    // less CPU, though a stored version (two copies of the chat, about 4 KB) then spills onto a
    // second page.
    //
    // cache_size: the pages ingest and leasing keep touching (the right edge of each index,
    // the newest versions); past it, a read comes from the WAL or the OS's page cache at the
    // cost of a system call. Measured under load: each KiB given up here is a KiB less
    // resident (the cache is one allocation, touched as it fills); throughput was the same at
    // 512 KiB as at 1 MiB, and at 1 MiB as with more; on a machine where system calls cost
    // more, 256 KiB delivered a fifth less. In KiB (negative), so it holds whatever the
    // file's page size.
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON; PRAGMA cache_size = -512;",
    )
    .map_err(|e| StoreError::Open(e.to_string()))?;
    // Plans made without looking at bound values: otherwise a statement whose plan read one
    // (the lease's `now`, tested against a partial index) is parsed again at every run.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(|e| StoreError::Open(e.to_string()))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let applied: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::Open(e.to_string()))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Open(format!(
            "the database is at schema version {applied}, newer than this chatbridge knows ({}); upgrade chatbridge",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = index + 1;
        let failed = |e: &dyn std::fmt::Display| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Open(format!("migration {version} failed: {e}"))
        };
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}"))
            .map_err(|e| failed(&e))?;
        if version == MENTIONS_MIGRATION {
            index_mentions(conn).map_err(|e| failed(&e))?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {version}; COMMIT;"))
            .map_err(|e| failed(&e))?;
    }
    Ok(())
}

/// Fills `mentions` for the bodies and attempts stored before it existed.
fn index_mentions(conn: &Connection) -> Result<(), StoreError> {
    let mut versions = conn
        .prepare("SELECT conversation_id, raw, normalized FROM conversation_versions")
        .map_err(db)?;
    let mut rows = versions.query([]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let id: String = row.get(0).map_err(db)?;
        let (raw, normalized): (Vec<u8>, String) =
            (row.get(1).map_err(db)?, row.get(2).map_err(db)?);
        let found = crate::privacy::addresses_in([raw.as_slice(), normalized.as_bytes()]);
        mention(conn, &id, 0, found.iter())?;
    }
    let mut attempts = conn
        .prepare(
            "SELECT a.id, d.id, a.error, a.excerpt FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE a.error IS NOT NULL OR a.excerpt IS NOT NULL",
        )
        .map_err(db)?;
    let mut rows = attempts.query([]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let (error, excerpt): (Option<String>, Option<String>) =
            (row.get(2).map_err(db)?, row.get(3).map_err(db)?);
        let found =
            crate::privacy::addresses_in([error, excerpt].iter().flatten().map(String::as_bytes));
        mention_in_attempt(
            conn,
            row.get(1).map_err(db)?,
            row.get(0).map_err(db)?,
            &found,
        )?;
    }
    Ok(())
}

/// Records that conversation `id`'s bodies (`attempt` 0) mention `addresses`.
fn mention<'a>(
    conn: &Connection,
    id: &str,
    attempt: i64,
    addresses: impl Iterator<Item = &'a String>,
) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO mentions (address, conversation_id, attempt_id) VALUES (?1, ?2, ?3)",
        )
        .map_err(db)?;
    for address in addresses {
        insert.execute(params![address, id, attempt]).map_err(db)?;
    }
    Ok(())
}

/// Records that attempt `attempt` of delivery `delivery` mentions `addresses`, those its
/// conversation's bodies do not (erasing those takes the whole conversation anyway).
fn mention_in_attempt(
    conn: &Connection,
    delivery: i64,
    attempt: i64,
    addresses: &[String],
) -> Result<(), StoreError> {
    if addresses.is_empty() {
        return Ok(());
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO mentions (address, conversation_id, attempt_id)
             SELECT ?1, d.conversation_id, ?2 FROM deliveries d WHERE d.id = ?3
               AND NOT EXISTS (SELECT 1 FROM mentions m
                               WHERE m.address = ?1 AND m.conversation_id = d.conversation_id AND m.attempt_id = 0)",
        )
        .map_err(db)?;
    for address in addresses {
        insert
            .execute(params![address, attempt, delivery])
            .map_err(db)?;
    }
    Ok(())
}

/// Copies committed WAL pages into the database file when the writer's WAL has grown past
/// [`CHECKPOINT_PAGES`]. PASSIVE never blocks the writer; a full pass lets the next commit
/// restart the WAL from its beginning, which bounds its size.
///
/// A truncating checkpoint, asked for after an erasure, waits (the busy timeout) for the
/// writer's batch in progress and for readers of older snapshots, and is tried again while
/// they keep it from finishing.
fn checkpoint_loop(conn: &Connection, nudged: &std::sync::mpsc::Receiver<Checkpoint>) {
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
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Makes committed batches durable: takes every batch committed since the last sync, syncs
/// the WAL once (which covers every frame written before it, whoever wrote it), then
/// answers their jobs. A failed sync fails them: their chats were not acknowledged, so the
/// senders resend, and the resends find them stored.
fn sync_loop(wal: &std::fs::File, waiting: &std::sync::mpsc::Receiver<Vec<Job>>) {
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
fn write_loop(
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
fn commit(conn: &mut Connection, mut batch: Vec<Job>) -> Vec<Job> {
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
fn run_together(conn: &mut Connection, jobs: &mut [Job]) -> Result<bool, String> {
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

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn ingest(conn: &Connection, new: &NewVersion) -> Result<IngestOutcome, StoreError> {
    let c = &new.conversation;
    let id = c.id.as_str();
    let now = ms(new.received_at);
    let latest: Option<i64> = conn
        .prepare_cached("SELECT latest_version FROM conversations WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(db)?;
    let row = params![
        id,
        c.source,
        c.account_id,
        c.status.as_str(),
        c.visitor.email.as_ref().map(|e| e.as_str()),
        c.started_at.map(ms),
        c.ended_at.map(ms),
        now
    ];
    // The common case, a conversation seen for the first time, needs no duplicate check.
    let version = match latest {
        None => {
            conn.prepare_cached(
                "INSERT INTO conversations (id, source, account_id, status, visitor_email, started_at, ended_at,
                                            latest_version, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8)",
            )
            .and_then(|mut s| s.execute(row))
            .map_err(db)?;
            1
        }
        Some(latest) => {
            let existing: Option<i64> = conn
                .prepare_cached(
                    "SELECT version FROM conversation_versions WHERE conversation_id = ?1 AND body_sha256 = ?2",
                )
                .and_then(|mut s| s.query_row(params![id, new.body_sha256], |r| r.get(0)).optional())
                .map_err(db)?;
            if let Some(version) = existing {
                return Ok(IngestOutcome::Duplicate { version });
            }
            conn.prepare_cached(
                "UPDATE conversations SET source = ?2, account_id = ?3, status = ?4, visitor_email = ?5,
                        started_at = ?6, ended_at = ?7, latest_version = latest_version + 1, updated_at = ?8
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(row))
            .map_err(db)?;
            latest + 1
        }
    };
    conn.prepare_cached(
        "INSERT INTO conversation_versions (conversation_id, version, body_sha256, codec, body, normalized, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        let p = &new.packed;
        s.execute(params![id, version, new.body_sha256, p.codec, p.body, p.normalized, now])
    })
    .map_err(db)?;
    mention(conn, id, 0, new.mentions.iter())?;
    let mut merged = 0;
    for connector in &new.connectors {
        // A waiting, unleased delivery of the same pair is brought up to this version rather
        // than queueing a second delivery of the same remote object. A first version has none.
        let replaced = if version == 1 {
            0
        } else {
            conn.prepare_cached(
                "UPDATE deliveries SET version = ?1, updated_at = ?2
                 WHERE conversation_id = ?3 AND connector = ?4 AND state = 'pending'
                   AND (lease_until IS NULL OR lease_until < ?2)",
            )
            .and_then(|mut s| s.execute(params![version, now, id, connector]))
            .map_err(db)?
        };
        merged += replaced;
        if replaced == 0 {
            let key = delivery_key(connector, id);
            conn.prepare_cached(
                "INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at,
                                         created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, version, connector, key, now]))
            .map_err(db)?;
        }
    }
    Ok(IngestOutcome::Stored {
        version,
        deliveries: new.connectors.len() - merged,
        merged,
    })
}

/// Connector `?1`'s pending deliveries due by `?2` and not leased at `?4`, oldest first, at
/// most `?3`: an index range read in order, stopped at the limit.
const DUE_OF_CONNECTOR: &str =
    "SELECT d.id, d.next_attempt_at FROM deliveries d INDEXED BY deliveries_due_by_connector
     WHERE d.connector = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2
       AND (d.lease_until IS NULL OR d.lease_until < ?4)
       AND NOT EXISTS (
           SELECT 1 FROM deliveries e
           WHERE e.conversation_id = d.conversation_id AND e.connector = d.connector
             AND e.state = 'pending' AND e.id < d.id)
     ORDER BY d.next_attempt_at, d.id LIMIT ?3";

fn lease(
    conn: &Connection,
    now: i64,
    limit: usize,
    lease_until: i64,
    caps: &BTreeMap<String, usize>,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    let mut candidates: Vec<(i64, i64)> = Vec::new();
    let mut due = conn.prepare_cached(DUE_OF_CONNECTOR).map_err(db)?;
    for (connector, &cap) in caps {
        let cap = cap.min(limit);
        if cap == 0 {
            continue;
        }
        let rows = due
            .query_map(params![connector, now, cap as i64, now], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(0)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(db)?;
        candidates.extend(rows);
    }
    candidates.sort_unstable();
    candidates.truncate(limit);
    let mut take = conn
        .prepare_cached(
            "UPDATE deliveries SET lease_until = ?2 WHERE id = ?1
             RETURNING id, conversation_id, version, connector, key, attempts, failures, first_attempt_at, created_at",
        )
        .map_err(db)?;
    let mut leased = Vec::with_capacity(candidates.len());
    for (_, id) in candidates {
        let delivery = take
            .query_row(params![id, lease_until], |r| {
                Ok(LeasedDelivery {
                    id: r.get(0)?,
                    conversation_id: r.get(1)?,
                    version: r.get(2)?,
                    connector: r.get(3)?,
                    key: r.get(4)?,
                    attempts: r.get(5)?,
                    failures: r.get(6)?,
                    first_attempt_at: r
                        .get::<_, Option<i64>>(7)?
                        .and_then(Timestamp::from_unix_millis),
                    queued_at: Timestamp::from_unix_millis(r.get(8)?)
                        .ok_or(rusqlite::Error::IntegralValueOutOfRange(8, 0))?,
                    raw: Vec::new(),
                    normalized: String::new(),
                    completed: BTreeMap::new(),
                    ledger: StepOutputs::new(),
                })
            })
            .map_err(db)?;
        leased.push(delivery);
    }
    for delivery in &mut leased {
        let (codec, body, normalized) = conn
            .prepare_cached("SELECT codec, body, normalized FROM conversation_versions WHERE conversation_id = ?1 AND version = ?2")
            .and_then(|mut s| {
                s.query_row(params![delivery.conversation_id, delivery.version], |r| {
                    Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
                })
            })
            .map_err(db)?;
        let (raw, normalized) = Packed::open(codec, body, normalized)?;
        delivery.raw = raw;
        delivery.normalized = normalized;
        delivery.ledger = conn
            .prepare_cached(
                "SELECT name, value FROM ledger WHERE conversation_id = ?1 AND connector = ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![delivery.conversation_id, delivery.connector], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?
            .into_iter()
            .map(|(name, value)| Ok((name, serde_json::from_str(&value).map_err(corrupt)?)))
            .collect::<Result<_, StoreError>>()?;
        let steps = conn
            .prepare_cached("SELECT step, outputs FROM delivery_steps WHERE delivery_id = ?1")
            .and_then(|mut s| {
                s.query_map([delivery.id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?;
        for (step, outputs) in steps {
            let outputs: StepOutputs = serde_json::from_str(&outputs)
                .map_err(|e| StoreError::Corrupt(format!("step outputs: {e}")))?;
            delivery.completed.insert(step, outputs);
        }
    }
    Ok(leased)
}

fn finish(
    conn: &Connection,
    id: i64,
    record: &AttemptRecord,
    mentions: &[String],
    next: &NextState,
) -> Result<(), StoreError> {
    let started = ms(record.started_at);
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, outcome, status, step, error, excerpt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            record.attempt,
            started,
            duration_ms(record.duration),
            record.outcome.as_str(),
            record.status,
            record.step,
            record.error,
            record.excerpt
        ])
    })
    .map_err(db)?;
    mention_in_attempt(conn, id, conn.last_insert_rowid(), mentions)?;
    let now = ms(Timestamp::now());
    if let NextState::Delivered { ledger, .. } = next {
        remember(conn, id, ledger, now)?;
    }
    let after = next.columns(now);
    conn.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = attempts + 1, failures = failures + ?3,
                next_attempt_at = ?4, lease_until = NULL, first_attempt_at = COALESCE(first_attempt_at, ?5),
                last_error = ?6, remote = COALESCE(?7, remote), updated_at = ?8
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            after.state.as_str(),
            after.failures,
            after.next_attempt_at,
            started,
            after.error,
            after.remote,
            now
        ])
    })
    .map_err(db)?;
    Ok(())
}

/// Keeps `entries` in the ledger of delivery `id`'s conversation and connector.
fn remember(conn: &Connection, id: i64, entries: &StepOutputs, now: i64) -> Result<(), StoreError> {
    for (name, value) in entries {
        conn.prepare_cached(
            "INSERT INTO ledger (conversation_id, connector, name, value, updated_at)
             SELECT conversation_id, connector, ?2, ?3, ?4 FROM deliveries WHERE id = ?1
             ON CONFLICT (conversation_id, connector, name) DO UPDATE SET
                value = excluded.value, updated_at = excluded.updated_at",
        )
        .and_then(|mut s| s.execute(params![id, name, value.to_string(), now]))
        .map_err(db)?;
    }
    Ok(())
}

fn delivery_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(DeliveryRow, String, i64, i64, i64, Option<String>)> {
    Ok((
        DeliveryRow {
            id: r.get(0)?,
            conversation_id: r.get(1)?,
            version: r.get(2)?,
            connector: r.get(3)?,
            key: r.get(4)?,
            state: DeliveryState::Pending,
            attempts: r.get(6)?,
            next_attempt_at: Timestamp::now(),
            last_error: r.get(8)?,
            remote: None,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        },
        r.get(5)?,
        r.get(7)?,
        r.get(10)?,
        r.get(11)?,
        r.get(9)?,
    ))
}

/// The columns [`conversation_row`] reads, from `conversations c`.
const CONVERSATION_COLUMNS: &str = "c.id, c.source, c.account_id, c.status, c.visitor_email, c.started_at, c.ended_at,
        c.latest_version, c.created_at, c.updated_at,
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'pending'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'delivered'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'dead')";

fn conversation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationRow> {
    let time = |i: usize| -> rusqlite::Result<Option<Timestamp>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .and_then(Timestamp::from_unix_millis))
    };
    let required = |i: usize| -> rusqlite::Result<Timestamp> {
        time(i)?.ok_or(rusqlite::Error::IntegralValueOutOfRange(i, 0))
    };
    Ok(ConversationRow {
        id: r.get(0)?,
        source: r.get(1)?,
        account_id: r.get(2)?,
        status: r.get(3)?,
        visitor_email: r.get(4)?,
        started_at: time(5)?,
        ended_at: time(6)?,
        latest_version: r.get(7)?,
        received_at: required(8)?,
        updated_at: required(9)?,
        deliveries: StateCounts {
            pending: r.get(10)?,
            delivered: r.get(11)?,
            dead: r.get(12)?,
        },
    })
}

/// The conditions of `f` over `conversations c`, and their values as SQLite takes them.
fn conversation_filter(f: &ConversationFilter) -> (String, Vec<rusqlite::types::Value>) {
    bound(FilterSql::conversations(
        f,
        placeholder,
        // The `conversations_email` index is in this collation.
        "c.visitor_email = {} COLLATE NOCASE",
    ))
}

/// Parameter `n` as SQLite writes it.
fn placeholder(n: usize) -> String {
    format!("?{n}")
}

/// `sql`'s conditions, and its values as SQLite takes them.
fn bound(sql: FilterSql) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let values = sql
        .values
        .into_iter()
        .map(|v| match v {
            FilterValue::Integer(n) => Value::Integer(n),
            FilterValue::Text(text) => Value::Text(text),
        })
        .collect();
    (sql.conditions, values)
}

fn conversations(
    conn: &Connection,
    f: &ConversationFilter,
) -> Result<Vec<ConversationRow>, StoreError> {
    let limit = if f.limit == 0 { -1 } else { f.limit as i64 };
    let (conditions, mut values) = conversation_filter(f);
    values.push(rusqlite::types::Value::Integer(limit));
    conn.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE {conditions}
         ORDER BY c.created_at DESC, c.id DESC LIMIT ?{}",
        values.len()
    ))
    .and_then(|mut s| {
        s.query_map(rusqlite::params_from_iter(values), conversation_row)?
            .collect()
    })
    .map_err(db)
}

fn replay(
    conn: &Connection,
    ids: &[String],
    connectors: &[String],
) -> Result<ReplayReport, StoreError> {
    let now = ms(Timestamp::now());
    let mut report = ReplayReport::default();
    for id in ids {
        let pairs: Vec<(String, bool)> = conn
            .prepare_cached(
                "SELECT connector, max(state = 'pending') FROM deliveries
                 WHERE conversation_id = ?1 AND connector IN (SELECT value FROM json_each(?2))
                 GROUP BY connector",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![id, serde_json::to_string(connectors).unwrap_or_default()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
            })
            .map_err(db)?;
        for (connector, pending) in pairs {
            if pending {
                report.already_pending += 1;
                continue;
            }
            conn.prepare_cached("DELETE FROM ledger WHERE conversation_id = ?1 AND connector = ?2")
                .and_then(|mut s| s.execute(params![id, connector]))
                .map_err(db)?;
            let delivery = conn
                .prepare_cached(
                    "INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at,
                                             created_at, updated_at)
                     SELECT id, latest_version, ?2, ?3, 'pending', ?4, ?4, ?4 FROM conversations WHERE id = ?1
                     RETURNING id",
                )
                .and_then(|mut s| s.query_row(params![id, connector, delivery_key(&connector, id), now], |r| r.get(0)))
                .map_err(db)?;
            report.queued.push(delivery);
        }
    }
    Ok(report)
}

/// Conversations first received before `?1`, after (`?2`, `?3`), oldest first, at most `?4`:
/// id, first received, last activity, pending and dead deliveries.
const PURGE_PAGE: &str = "SELECT c.id, c.created_at,
        max(c.updated_at, coalesce((SELECT max(d.updated_at) FROM deliveries d WHERE d.conversation_id = c.id), 0)),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'pending'),
        (SELECT count(*) FROM deliveries d WHERE d.conversation_id = c.id AND d.state = 'dead')
     FROM conversations c
     WHERE c.created_at < ?1 AND (c.created_at, c.id) > (?2, ?3)
     ORDER BY c.created_at, c.id LIMIT ?4";

fn purge(
    conn: &Connection,
    cutoffs: PurgeCutoffs,
    after: Option<&ConversationCursor>,
    limit: usize,
) -> Result<PurgeBatch, StoreError> {
    // Oldest first through the `(created_at, id)` index, from where the last batch stopped:
    // a conversation first received after the later cut-off cannot have expired.
    let (after_at, after_id) = after.map_or((i64::MIN, String::new()), |c| {
        (ms(c.received_at), c.id.clone())
    });
    let examined = conn
        .prepare_cached(PURGE_PAGE)
        .and_then(|mut s| {
            s.query_map(
                params![cutoffs.latest_ms(), after_at, after_id, limit as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, u64>(3)?,
                        r.get::<_, u64>(4)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)?;
    let mut delete = conn
        .prepare_cached("DELETE FROM conversations WHERE id = ?1")
        .map_err(db)?;
    let mut report = PurgeReport::default();
    for (id, _, last_active, pending, dead) in &examined {
        if *pending == 0 && cutoffs.expired(*last_active, *dead) {
            report.conversations += delete.execute([id]).map_err(db)? as u64;
        }
    }
    let next = match examined.last() {
        Some((id, at, ..)) if examined.len() == limit => Some(ConversationCursor {
            received_at: from_ms(*at)?,
            id: id.clone(),
        }),
        _ => None,
    };
    if after.is_none() {
        report.quarantined = conn
            .prepare_cached("DELETE FROM quarantine WHERE received_at < ?1")
            .and_then(|mut s| s.execute([ms(cutoffs.dead_before)]))
            .map_err(db)? as u64;
    }
    Ok(PurgeBatch { report, next })
}

/// At most `?2` conversations whose bodies mention `?1`.
const MENTIONED_IN_BODIES: &str =
    "SELECT conversation_id FROM mentions WHERE address = ?1 AND attempt_id = 0 LIMIT ?2";
/// At most `?2` conversations of the visitor with address `?1`.
const OF_VISITOR: &str =
    "SELECT id FROM conversations WHERE visitor_email = ?1 COLLATE NOCASE LIMIT ?2";
/// At most `?2` attempts whose answer mentions `?1`, with their conversation.
const MENTIONED_IN_ATTEMPTS: &str = "SELECT conversation_id, attempt_id FROM mentions WHERE address = ?1 AND attempt_id <> 0 LIMIT ?2";

fn forget(conn: &Connection, needle: &str, limit: usize) -> Result<ForgetBatch, StoreError> {
    let limit = limit as i64;
    let ids = |sql: &str| -> Result<Vec<String>, StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.query_map(params![needle, limit], |r| r.get(0))?.collect())
            .map_err(db)
    };
    let doomed = Doomed::of(limit as usize, ids(MENTIONED_IN_BODIES)?, ids(OF_VISITOR)?);
    let mut report = ForgetReport::default();
    for id in &doomed.ids {
        let count = |sql: &str| -> Result<u64, StoreError> {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.query_row([id], |r| r.get(0)))
                .map_err(db)
        };
        report.versions +=
            count("SELECT count(*) FROM conversation_versions WHERE conversation_id = ?1")?;
        report.deliveries += count("SELECT count(*) FROM deliveries WHERE conversation_id = ?1")?;
        report.attempts += count(
            "SELECT count(*) FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE conversation_id = ?1)",
        )?;
        report.ledger_entries += count("SELECT count(*) FROM ledger WHERE conversation_id = ?1")?;
        report.conversations += conn
            .prepare_cached("DELETE FROM conversations WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(db)? as u64;
    }
    // Attempts of other conversations whose answer mentioned the address.
    let attempts: Vec<(String, i64)> = conn
        .prepare_cached(MENTIONED_IN_ATTEMPTS)
        .and_then(|mut s| {
            s.query_map(params![needle, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(db)?;
    let found_attempts = attempts.len();
    for (conversation, attempt) in attempts {
        // The attempt's delivery, and which of their texts mention the address.
        let found: Option<(i64, Blanked)> = conn
            .prepare_cached(
                "SELECT a.delivery_id, a.error, a.excerpt, d.last_error FROM attempts a
                 JOIN deliveries d ON d.id = a.delivery_id WHERE a.id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([attempt], |r| {
                    let text = |i: usize| r.get::<_, Option<String>>(i);
                    let (error, excerpt, last) = (text(1)?, text(2)?, text(3)?);
                    Ok((
                        r.get(0)?,
                        Blanked::of(
                            needle,
                            error.as_deref(),
                            excerpt.as_deref(),
                            last.as_deref(),
                        ),
                    ))
                })
                .optional()
            })
            .map_err(db)?;
        if let Some((delivery, blanked)) = found {
            conn.prepare_cached(
                "UPDATE attempts SET error = CASE WHEN ?2 THEN ?4 ELSE error END,
                                     excerpt = CASE WHEN ?3 THEN NULL ELSE excerpt END
                 WHERE id = ?1 AND (?2 OR ?3)",
            )
            .and_then(|mut s| s.execute(params![attempt, blanked.error, blanked.excerpt, ERASED]))
            .map_err(db)?;
            conn.prepare_cached("UPDATE deliveries SET last_error = ?2 WHERE id = ?1 AND ?3")
                .and_then(|mut s| s.execute(params![delivery, ERASED, blanked.last_error]))
                .map_err(db)?;
            report.excerpts_blanked += blanked.count();
        }
        conn.prepare_cached(
            "DELETE FROM mentions WHERE address = ?1 AND conversation_id = ?2 AND attempt_id = ?3",
        )
        .and_then(|mut s| s.execute(params![needle, conversation, attempt]))
        .map_err(db)?;
    }
    Ok(ForgetBatch {
        report,
        done: !doomed.more && found_attempts < limit as usize,
    })
}

/// Versions received since `?1`.
const RECEIVED_SINCE: &str = "SELECT count(*) FROM conversation_versions WHERE received_at >= ?1";

/// The first connector after `?1` with a delivery in `state`.
fn next_connector(state: DeliveryState) -> String {
    format!(
        "SELECT min(connector) FROM deliveries WHERE state = '{}' AND connector > ?1",
        state.as_str()
    )
}

/// Connector `?1`'s pending deliveries, those retried, and the oldest one's creation.
const PENDING_OF: &str =
    "SELECT count(*), coalesce(sum(attempts > 0), 0), min(created_at) FROM deliveries
     WHERE state = 'pending' AND connector = ?1";
/// Connector `?1`'s deliveries that succeeded since `?2`.
const DELIVERED_SINCE: &str = "SELECT count(*) FROM deliveries WHERE state = 'delivered' AND connector = ?1 AND updated_at >= ?2";
/// Connector `?1`'s dead deliveries, and those that died since `?2`.
const DEAD_OF: &str = "SELECT count(*), coalesce(sum(updated_at >= ?2), 0) FROM deliveries
     WHERE state = 'dead' AND connector = ?1";

/// Each connector's queue and outcomes. Every figure is a range of one state's partial
/// index led by the connector, as are the connectors' names, walked one at a time: the
/// cost follows the queue and the day's deliveries, not the history kept.
fn connector_stats(conn: &Connection, since: i64) -> Result<Vec<ConnectorStats>, StoreError> {
    let mut names = std::collections::BTreeSet::new();
    for state in [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Dead,
    ] {
        let mut next = conn.prepare_cached(&next_connector(state)).map_err(db)?;
        let mut after = String::new();
        while let Some(name) = next
            .query_row([&after], |r| r.get::<_, Option<String>>(0))
            .map_err(db)?
        {
            names.insert(name.clone());
            after = name;
        }
    }
    names
        .into_iter()
        .map(|connector| {
            let (pending, retrying, oldest): (u64, u64, Option<i64>) = conn
                .prepare_cached(PENDING_OF)
                .and_then(|mut s| {
                    s.query_row([&connector], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .map_err(db)?;
            let delivered: u64 = conn
                .prepare_cached(DELIVERED_SINCE)
                .and_then(|mut s| s.query_row(params![connector, since], |r| r.get(0)))
                .map_err(db)?;
            let (dead_total, dead): (u64, u64) = conn
                .prepare_cached(DEAD_OF)
                .and_then(|mut s| {
                    s.query_row(params![connector, since], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .map_err(db)?;
            Ok(ConnectorStats {
                connector,
                pending,
                retrying,
                oldest_pending: oldest.and_then(Timestamp::from_unix_millis),
                delivered,
                dead,
                dead_total,
            })
        })
        .collect()
}

/// Quarantined bodies matching `condition` on `?1`, oldest first.
fn quarantined_where(
    conn: &Connection,
    condition: &str,
    value: i64,
    limit: usize,
) -> Result<Vec<QuarantinedBody>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT id, source, reason, body, content_type, received_at FROM quarantine
             WHERE {condition} ORDER BY id LIMIT ?2"
        ))
        .and_then(|mut s| {
            s.query_map(params![value, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db)?;
    rows.into_iter()
        .map(|(id, source, reason, body, content_type, at)| {
            Ok(QuarantinedBody {
                id,
                item: Quarantined {
                    source,
                    reason,
                    body,
                    content_type,
                    received_at: from_ms(at)?,
                },
            })
        })
        .collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, version: NewVersion) -> Result<IngestOutcome, StoreError> {
        self.call(move |conn| ingest(conn, &version)).await
    }

    async fn quarantine(&self, item: Quarantined) -> Result<i64, StoreError> {
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO quarantine (source, reason, body, content_type, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![item.source, item.reason, item.body, item.content_type, ms(item.received_at)]))
            .map_err(db)?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineRow>, StoreError> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached("SELECT id, source, reason, length(body), received_at FROM quarantine ORDER BY id DESC LIMIT ?1")
                .and_then(|mut s| {
                    s.query_map([limit as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            rows.into_iter()
                .map(|(id, source, reason, size, at)| {
                    Ok(QuarantineRow { id, source, reason, size: size as usize, received_at: from_ms(at)? })
                })
                .collect()
        })
        .await
    }

    async fn lease_due(
        &self,
        now: Timestamp,
        limit: usize,
        lease_for: Duration,
        caps: &BTreeMap<String, usize>,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let caps = caps.clone();
        let until = ms(now.plus(lease_for));
        self.call_soft(move |conn| lease(conn, ms(now), limit, until, &caps))
            .await
    }

    async fn next_due(&self, connectors: &[String]) -> Result<Option<Timestamp>, StoreError> {
        let connectors = connectors.to_vec();
        let now = ms(Timestamp::now());
        self.call_soft(move |conn| {
            // What the next lease would take first, per connector (a time in the past means
            // now), and when a lease held on a delivery runs out.
            let mut first = conn.prepare_cached(DUE_OF_CONNECTOR).map_err(db)?;
            let mut next: Option<i64> = conn
                .prepare_cached(
                    "SELECT min(lease_until) FROM deliveries WHERE state = 'pending' AND lease_until IS NOT NULL",
                )
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(db)?;
            for connector in &connectors {
                let at: Option<i64> = first
                    .query_row(params![connector, i64::MAX, 1, now], |r| r.get(1))
                    .optional()
                    .map_err(db)?;
                next = [next, at].into_iter().flatten().min();
            }
            next.map(from_ms).transpose()
        })
        .await
    }

    async fn complete_step(
        &self,
        delivery_id: i64,
        step: &str,
        outputs: &StepOutputs,
        remember: &StepOutputs,
    ) -> Result<(), StoreError> {
        let step = step.to_owned();
        let encoded = serde_json::to_string(outputs).map_err(corrupt)?;
        let remembered = remember.clone();
        self.call(move |conn| {
            let now = ms(Timestamp::now());
            conn.prepare_cached(
                "INSERT INTO delivery_steps (delivery_id, step, outputs, completed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (delivery_id, step) DO UPDATE SET outputs = excluded.outputs, completed_at = excluded.completed_at",
            )
            .and_then(|mut s| s.execute(params![delivery_id, step, encoded, now]))
            .map_err(db)?;
            self::remember(conn, delivery_id, &remembered, now)
        })
        .await
    }

    async fn finish_attempt(
        &self,
        delivery_id: i64,
        record: AttemptRecord,
        next: NextState,
    ) -> Result<(), StoreError> {
        let mentions = record.mentions();
        self.call(move |conn| finish(conn, delivery_id, &record, &mentions, &next))
            .await
    }

    async fn release(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call_soft(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending'",
            )
            .and_then(|mut s| s.execute([&ids]))
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn renew(&self, ids: &[i64], until: Timestamp) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call_soft(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET lease_until = ?2
                 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending' AND lease_until IS NOT NULL",
            )
            .and_then(|mut s| s.execute(params![ids, ms(until)]))
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            let n = conn
                .execute("UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL AND state = 'pending'", [])
                .map_err(db)?;
            Ok(n as u64)
        })
        .await
    }

    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let (conditions, mut values) = bound(FilterSql::deliveries(&filter, placeholder));
        let limit = if filter.limit == 0 {
            -1
        } else {
            filter.limit as i64
        };
        values.push(rusqlite::types::Value::Integer(limit));
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT id, conversation_id, version, connector, key, state, attempts, next_attempt_at, last_error,
                            remote, created_at, updated_at
                     FROM deliveries WHERE {conditions} ORDER BY id DESC LIMIT ?{}",
                    values.len()
                ))
                .and_then(|mut s| {
                    s.query_map(rusqlite::params_from_iter(values), delivery_row)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            rows.into_iter()
                .map(|(mut row, state, next, created, updated, remote)| {
                    row.state = DeliveryState::parse(&state).map_err(StoreError::Corrupt)?;
                    row.next_attempt_at = from_ms(next)?;
                    row.created_at = from_ms(created)?;
                    row.updated_at = from_ms(updated)?;
                    row.remote = remote.and_then(|r| serde_json::from_str(&r).ok());
                    Ok(row)
                })
                .collect()
        })
        .await
    }

    async fn attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT attempt, started_at, duration_ms, outcome, status, step, error, excerpt
                     FROM attempts WHERE delivery_id = ?1 ORDER BY id",
                )
                .and_then(|mut s| {
                    s.query_map([delivery_id], |r| {
                        Ok((
                            r.get::<_, u32>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<u16>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                            r.get::<_, Option<String>>(6)?,
                            r.get::<_, Option<String>>(7)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            rows.into_iter()
                .map(
                    |(attempt, started, duration, outcome, status, step, error, excerpt)| {
                        Ok(AttemptRow {
                            attempt,
                            started_at: from_ms(started)?,
                            duration_ms: u64::try_from(duration).unwrap_or_default(),
                            outcome: AttemptOutcome::parse(&outcome)?,
                            status,
                            step,
                            error,
                            excerpt,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    async fn retry(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids).map_err(corrupt)?;
        self.call(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'pending', failures = 0, first_attempt_at = NULL,
                            next_attempt_at = ?2, updated_at = ?2
                     WHERE state = 'dead' AND id IN (SELECT value FROM json_each(?1))",
                )
                .and_then(|mut s| s.execute(params![ids, ms(Timestamp::now())]))
                .map_err(db)?;
            Ok(n as u64)
        })
        .await
    }

    async fn conversations(
        &self,
        filter: ConversationFilter,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        self.read(move |conn| conversations(conn, &filter)).await
    }

    async fn conversation_count(&self, filter: &ConversationFilter) -> Result<u64, StoreError> {
        let (conditions, values) = conversation_filter(filter);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT count(*) FROM conversations c WHERE {conditions}"
            ))
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0)))
            .map_err(db)
        })
        .await
    }

    async fn conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationRow, Vec<VersionRow>)>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let Some(row) = conn
                .prepare_cached(&format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?1"))
                .and_then(|mut s| s.query_row([&id], conversation_row).optional())
                .map_err(db)?
            else {
                return Ok(None);
            };
            let versions = conn
                .prepare_cached(
                    "SELECT version, received_at, body_sha256, codec, body, normalized FROM conversation_versions
                     WHERE conversation_id = ?1 ORDER BY version",
                )
                .and_then(|mut s| {
                    s.query_map([&id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?
                .into_iter()
                .map(|(version, at, body_sha256, codec, body, normalized)| {
                    let (raw, normalized) = Packed::open(codec, body, normalized)?;
                    Ok(VersionRow { version, received_at: from_ms(at)?, body_sha256, normalized, size: raw.len() })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Some((row, versions)))
        })
        .await
    }

    async fn replay(
        &self,
        conversation_ids: &[String],
        connectors: &[String],
    ) -> Result<ReplayReport, StoreError> {
        let ids = conversation_ids.to_vec();
        let connectors = connectors.to_vec();
        self.call(move |conn| replay(conn, &ids, &connectors)).await
    }

    async fn connector_stats(&self, since: Timestamp) -> Result<Vec<ConnectorStats>, StoreError> {
        self.read(move |conn| connector_stats(conn, ms(since)))
            .await
    }

    async fn received_since(&self, since: Timestamp) -> Result<u64, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(RECEIVED_SINCE)
                .and_then(|mut s| s.query_row([ms(since)], |r| r.get(0)))
                .map_err(db)
        })
        .await
    }

    async fn purge(
        &self,
        cutoffs: PurgeCutoffs,
        after: Option<ConversationCursor>,
        limit: usize,
    ) -> Result<PurgeBatch, StoreError> {
        self.call(move |conn| purge(conn, cutoffs, after.as_ref(), limit.max(1)))
            .await
    }

    async fn forget(&self, email: &str, limit: usize) -> Result<ForgetBatch, StoreError> {
        let email = email.to_owned();
        self.call(move |conn| forget(conn, &email, limit.max(1)))
            .await
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        let (done, finished) = oneshot::channel();
        let checkpoints = self.checkpoints.clone();
        // A full queue waits for the checkpointer; not on an async thread.
        tokio::task::spawn_blocking(move || checkpoints.send(Checkpoint::Truncate(done)))
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(|_| StoreError::Closed)?;
        finished.await.map_err(|_| StoreError::Closed)?
    }

    async fn quarantined_body(&self, id: i64) -> Result<Option<QuarantinedBody>, StoreError> {
        self.read(move |conn| quarantined_where(conn, "id = ?1", id, 1).map(|mut rows| rows.pop()))
            .await
    }

    async fn quarantined_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<QuarantinedBody>, StoreError> {
        self.read(move |conn| quarantined_where(conn, "id > ?1", after, limit))
            .await
    }

    async fn requarantine(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        let reason = reason.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE quarantine SET reason = ?2 WHERE id = ?1",
                params![id, reason],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn drop_quarantined(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let ids = ids.to_vec();
        self.call(move |conn| {
            let mut delete = conn
                .prepare_cached("DELETE FROM quarantine WHERE id = ?1")
                .map_err(db)?;
            let mut dropped = 0;
            for id in &ids {
                dropped += delete.execute([id]).map_err(db)? as u64;
            }
            Ok(dropped)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
            .await
    }

    async fn open_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.call(move |conn| {
            let now = ms(session.created_at);
            conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1 OR idle_until <= ?1")
                .and_then(|mut s| s.execute([now]))
                .map_err(db)?;
            conn.prepare_cached(
                "INSERT INTO sessions (id_hash, token_mac, created_at, expires_at, idle_until)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    session.id_hash,
                    session.token_mac,
                    now,
                    ms(session.expires_at),
                    ms(session.idle_until)
                ])
            })
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn touch_session(
        &self,
        id_hash: &str,
        now: Timestamp,
        idle_until: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let id_hash = id_hash.to_owned();
        // Losing a touch in a power cut only shortens a session: no wait for the disk.
        self.call_soft(move |conn| {
            conn.prepare_cached(
                "UPDATE sessions SET idle_until = ?3
                 WHERE id_hash = ?1 AND expires_at > ?2 AND idle_until > ?2
                 RETURNING token_mac",
            )
            .and_then(|mut s| {
                s.query_row(params![id_hash, ms(now), ms(idle_until)], |r| r.get(0))
                    .optional()
            })
            .map_err(db)
        })
        .await
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE id_hash = ?1")
                .and_then(|mut s| s.execute([&id_hash]))
                .map(|_| ())
                .map_err(db)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConversationCursor, ConversationFilter};

    fn version(channel: u64) -> NewVersion {
        let body = format!(r#"{{"accountId": 208, "channel": {{"id": {channel}}}}}"#);
        let parsed = crate::sources::smartsupp::parse(body.as_bytes()).expect("parses");
        NewVersion::new(
            parsed.conversation,
            body.as_bytes(),
            body.clone().into_bytes(),
            vec!["desk".into()],
            Timestamp::now(),
        )
        .expect("serializes")
    }

    /// Ingests channels `channels` at once, each from a task of its own.
    async fn ingest_at_once(
        store: &SqliteStore,
        channels: std::ops::Range<u64>,
    ) -> Vec<Result<IngestOutcome, StoreError>> {
        let mut tasks = tokio::task::JoinSet::new();
        for channel in channels {
            let store = store.clone();
            tasks.spawn(async move { store.ingest(version(channel)).await });
        }
        tasks.join_all().await
    }

    /// Conversations in the file at `path`, read by a connection of its own.
    fn stored_in_file(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))
            .unwrap()
    }

    async fn count(store: &SqliteStore) -> u64 {
        store
            .conversation_count(&ConversationFilter::default())
            .await
            .expect("counted")
    }

    /// Every listing the API and dashboard run reads its page through an index: no table
    /// scan of conversations, and the per-row delivery counts by the conversation's index.
    /// (At a million conversations a scan took seconds.)
    #[tokio::test]
    async fn listings_and_searches_read_through_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db"), Synchronous::Full).unwrap();
        let cursor = ConversationCursor {
            received_at: Timestamp::now(),
            id: "smartsupp:208:1".into(),
        };
        let filters = [
            ConversationFilter::default(),
            ConversationFilter {
                email: Some("Jane@Example.com".into()),
                ..ConversationFilter::default()
            },
            ConversationFilter {
                email: Some("jane@example.com".into()),
                after: Some(cursor.clone()),
                ..ConversationFilter::default()
            },
            ConversationFilter {
                since: Some(Timestamp::now().minus(Duration::from_secs(3600))),
                status: Some("missed".into()),
                delivery_state: Some(DeliveryState::Dead),
                after: Some(cursor),
                ..ConversationFilter::default()
            },
        ];
        for filter in filters {
            let (conditions, values) = conversation_filter(&filter);
            let sql = format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations c
                 WHERE {conditions} ORDER BY c.created_at DESC, c.id DESC LIMIT 50"
            );
            let plan = plan_of(&store, sql, values).await;
            assert_indexed(&format!("{filter:?}"), &plan);
            assert!(
                !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                "{filter:?} sorts instead of reading in order: {plan:#?}"
            );
        }
        // The dead letters of one connector, a page below the last one's ids.
        let dead = DeliveryFilter {
            state: Some(DeliveryState::Dead),
            connector: Some("helpdesk".into()),
            before: Some(1000),
            limit: 50,
            ..DeliveryFilter::default()
        };
        let (conditions, values) = bound(FilterSql::deliveries(&dead, placeholder));
        let sql = format!("SELECT id FROM deliveries WHERE {conditions} ORDER BY id DESC LIMIT 50");
        let plan = plan_of(&store, sql, values).await;
        assert_indexed("dead letters", &plan);
        assert!(!plan.iter().any(|s| s.contains("TEMP B-TREE")), "{plan:#?}");
    }

    /// What leases, the overview, the metrics, erasure and retention read, they read through
    /// indexes: their cost follows what they find, not what is stored.
    #[tokio::test]
    async fn counts_erasure_and_retention_read_through_indexes() {
        use rusqlite::types::Value;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db"), Synchronous::Full).unwrap();
        let (text, number) = (|t: &str| Value::Text(t.into()), Value::Integer);
        let mut statements: Vec<(String, Vec<Value>)> = [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Dead,
        ]
        .into_iter()
        .map(|state| (next_connector(state), vec![text("a")]))
        .collect();
        for (sql, values) in [
            (PENDING_OF, vec![text("helpdesk")]),
            (
                DUE_OF_CONNECTOR,
                vec![text("helpdesk"), number(1), number(10), number(1)],
            ),
            (DELIVERED_SINCE, vec![text("helpdesk"), number(1)]),
            (DEAD_OF, vec![text("helpdesk"), number(1)]),
            (RECEIVED_SINCE, vec![number(1)]),
            (
                MENTIONED_IN_BODIES,
                vec![text("zoe@example.com"), number(100)],
            ),
            (OF_VISITOR, vec![text("zoe@example.com"), number(100)]),
            (
                MENTIONED_IN_ATTEMPTS,
                vec![text("zoe@example.com"), number(100)],
            ),
            (
                PURGE_PAGE,
                vec![number(9), number(1), text("x"), number(100)],
            ),
        ] {
            statements.push((sql.to_owned(), values));
        }
        let (conditions, values) = conversation_filter(&ConversationFilter {
            remote: Some("4711".into()),
            ..ConversationFilter::default()
        });
        statements.push((
            format!("SELECT c.id FROM conversations c WHERE {conditions} ORDER BY c.created_at DESC, c.id DESC"),
            values,
        ));
        for (sql, values) in statements {
            let plan = plan_of(&store, sql.clone(), values).await;
            assert_indexed(&sql, &plan);
        }
    }

    /// A store made before bodies were indexed by the addresses they mention gets its index
    /// filled when it is opened: an erasure then finds what was stored before.
    #[tokio::test]
    async fn what_was_stored_before_the_mentions_index_is_indexed_on_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = connect(&path).unwrap();
            for (index, sql) in MIGRATIONS[..MENTIONS_MIGRATION - 1].iter().enumerate() {
                conn.execute_batch(&format!("{sql}\nPRAGMA user_version = {};", index + 1))
                    .unwrap();
            }
            conn.execute_batch(
                r#"INSERT INTO conversations VALUES ('c1', 'smartsupp', '1', 'served', 'ana@example.com', NULL, NULL, 1, 1, 1);
                   INSERT INTO conversation_versions VALUES ('c1', 1, 'x', CAST('{"note":"cc BOB\u0040example.org"}' AS BLOB), '{}', 1);
                   INSERT INTO conversations VALUES ('c2', 'smartsupp', '1', 'served', 'carl@example.com', NULL, NULL, 1, 1, 1);
                   INSERT INTO conversation_versions VALUES ('c2', 1, 'y', CAST('{}' AS BLOB), '{}', 1);
                   INSERT INTO deliveries (conversation_id, version, connector, key, state, next_attempt_at, created_at, updated_at)
                        VALUES ('c2', 1, 'helpdesk', 'k', 'dead', 1, 1, 1);
                   INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, outcome, error)
                        VALUES (1, 1, 1, 1, 'failed', 'duplicate requester bob@example.org');"#,
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, Synchronous::Full).unwrap();
        let batch = store.forget("bob@example.org", 100).await.unwrap();
        assert_eq!(batch.report.conversations, 1);
        assert_eq!(batch.report.excerpts_blanked, 1);
        assert!(batch.done);
        let left = store
            .conversations(ConversationFilter::default())
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "c2");
        // Stored before versions were packed, it reads as it was written.
        let (_, versions) = store.conversation("c2").await.unwrap().unwrap();
        assert_eq!(
            (versions[0].normalized.as_str(), versions[0].size),
            ("{}", 2)
        );
    }

    /// SQLite's plan for `sql`, a line per step.
    async fn plan_of(
        store: &SqliteStore,
        sql: String,
        values: Vec<rusqlite::types::Value>,
    ) -> Vec<String> {
        store
            .read(move |conn| {
                let mut s = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .map_err(db)?;
                let rows = s
                    .query_map(rusqlite::params_from_iter(values.iter()), |r| r.get(3))
                    .map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)
            })
            .await
            .unwrap()
    }

    /// Fails unless every table `plan` reads is read through an index.
    fn assert_indexed(what: &str, plan: &[String]) {
        let scans: Vec<&String> = plan
            .iter()
            .filter(|step| step.starts_with("SCAN") && !step.contains("USING"))
            .collect();
        assert!(scans.is_empty(), "{what}: {plan:#?}");
    }

    /// A session is extended while it lives and found by nobody once its idle time or its
    /// lifetime has passed, or after it was ended; opening another forgets the ended ones.
    #[tokio::test]
    async fn sessions_end_when_idle_past_their_lifetime_or_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), Synchronous::Full).unwrap();
        let now = Timestamp::now();
        let hour = Duration::from_secs(3600);
        let session = |id: &str, expires_at: Timestamp, idle_until: Timestamp| NewSession {
            id_hash: id.to_owned(),
            token_mac: format!("mac-{id}"),
            created_at: now,
            expires_at,
            idle_until,
        };
        for s in [
            session("live", now.plus(hour), now.plus(hour)),
            session("idle", now.plus(hour), now.minus(hour)),
            session("old", now.minus(hour), now.plus(hour)),
            session("ended", now.plus(hour), now.plus(hour)),
        ] {
            store.open_session(s).await.unwrap();
        }
        store.end_session("ended").await.unwrap();
        let later = now.plus(Duration::from_secs(60));
        let touch = |id: &'static str| store.touch_session(id, later, later.plus(hour));
        assert_eq!(touch("live").await.unwrap().as_deref(), Some("mac-live"));
        for gone in ["idle", "old", "ended", "unknown"] {
            assert_eq!(touch(gone).await.unwrap(), None, "{gone}");
        }
        store
            .open_session(session("next", now.plus(hour), now.plus(hour)))
            .await
            .unwrap();
        let kept: i64 = store
            .call(|conn| {
                conn.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(kept, 2, "the live session and the new one");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_ingests_are_each_answered_after_their_commit_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db"), Synchronous::Full).unwrap();
        for answer in ingest_at_once(&store, 0..200).await {
            assert!(matches!(
                answer,
                Ok(IngestOutcome::Stored { version: 1, .. })
            ));
        }
        assert_eq!(count(&store).await, 200);
        // Leases (soft work) and outcomes (durable) are answered too, in any mix.
        let leased = store
            .lease_due(
                Timestamp::now().plus(Duration::from_secs(1)),
                500,
                Duration::from_secs(30),
                &BTreeMap::from([("desk".to_owned(), 500)]),
            )
            .await
            .unwrap();
        assert_eq!(leased.len(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_fails_alone_and_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let store = SqliteStore::open(&path, Synchronous::Full).unwrap();
        // Holds the writer until the failing job and the ingests wait behind it, so that
        // they make one batch.
        let (started, writer_busy) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let mut released = Some(released);
        let holder = store.clone();
        let holder = tokio::spawn(async move {
            holder
                .call(move |_| {
                    // Only its first run waits: a job may run again (see `commit`).
                    if let Some(released) = released.take() {
                        let _ = started.send(());
                        let _ = released.recv();
                    }
                    Ok(())
                })
                .await
        });
        tokio::task::spawn_blocking(move || writer_busy.recv().unwrap())
            .await
            .unwrap();
        let failing = store.clone();
        let failing = tokio::spawn(async move {
            failing
                .call(|conn| {
                    conn.execute("INSERT INTO no_such_table VALUES (1)", [])
                        .map_err(db)
                })
                .await
        });
        let ingests = {
            let store = store.clone();
            tokio::spawn(async move { ingest_at_once(&store, 0..50).await })
        };
        while store.jobs.capacity() > QUEUE_DEPTH - 51 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let failed = failing.await.unwrap();
        let ingested = ingests.await.unwrap();
        assert!(
            matches!(&failed, Err(StoreError::Database(e)) if e.contains("no_such_table")),
            "{failed:?}"
        );
        assert!(ingested.iter().all(Result::is_ok));
        assert_eq!(count(&store).await, 50);
        // What was answered is in the file.
        assert_eq!(stored_in_file(&path), 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_last_handle_ends_the_threads_and_folds_the_wal_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let store = SqliteStore::open(&path, Synchronous::Full).unwrap();
        ingest_at_once(&store, 0..10).await;
        let wal = wal_path(&path);
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        drop(store);
        // The checkpointer truncates the WAL as it exits, after the writer and the sync
        // thread have.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the store's threads did not end"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stored_in_file(&path), 10);
    }
}
