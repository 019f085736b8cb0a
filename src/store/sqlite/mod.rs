//! The default store: one SQLite file in WAL mode, written by one thread with group commit.
//!
//! Why one writer thread and rusqlite rather than a pool: SQLite allows one writer at a
//! time anyway, and durability costs one fsync per commit. The writer takes every job that
//! is waiting (up to `MAX_BATCH`), runs them all in one transaction and commits once;
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
//! own connection, nudged once the WAL holds `CHECKPOINT_PAGES` pages, instead of inside
//! the commit that crosses that size as SQLite does by default: they are a large part of the
//! writer's time otherwise, and the writer is the one serial step of ingest.
//!
//! Reads that only look (listings, searches, counts, a conversation's detail) run on
//! connections of their own, on blocking threads, each in one read transaction: WAL gives
//! each a snapshot while the writer goes on, so a search through a year of chats never holds
//! an acknowledgement back. Reads that decide a write (the duplicate check, a lease) stay on
//! the writer, inside its transaction. Other processes (the CLI) open their own connection;
//! WAL lets them read while we write, and `busy_timeout` makes their writes wait their turn.

mod archive;
mod deliveries;
mod fetches;
mod inbox;
mod maintenance;
mod queue;
mod schema;
mod sessions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use self::schema::migrate;
use self::writer::{
    CHECKPOINT_PAGES, Call, Checkpoint, Job, QUEUE_DEPTH, checkpoint_loop, sync_loop, wal_path,
    write_loop,
};
use crate::config::Synchronous;
use crate::store::{Cause, StoreError};

/// A SQLite-backed [`Store`](crate::store::Store). Cheap to clone; all clones share the writer and the readers.
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
                    .map_err(|e| StoreError::Open(Cause::of(e)))?;
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

impl SqliteStore {
    /// Opens (creating if needed) the database file, applies migrations, starts the writer.
    ///
    /// # Errors
    /// When the file cannot be created or opened, or a migration fails.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Open(Cause::described(format!("{}: {e}", dir.display()), e))
            })?;
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
        .map_err(|e| StoreError::Open(Cause::of(e)))?;
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| {
                    StoreError::Open(Cause::described(
                        format!("cannot start the {name} thread: {e}"),
                        e,
                    ))
                })
        };
        let syncer = match synchronous {
            Synchronous::Normal => None,
            Synchronous::Full => {
                // The WAL exists once a WAL-mode database has been read, as `migrate` did.
                let wal = wal_path(path);
                let wal = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&wal)
                    .map_err(|e| {
                        StoreError::Open(Cause::described(format!("{}: {e}", wal.display()), e))
                    })?;
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
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Open(Cause::described(format!("{}: {e}", path.display()), e)))?;
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
    .map_err(|e| StoreError::Open(Cause::of(e)))?;
    // Plans made without looking at bound values: otherwise a statement whose plan read one
    // (the lease's `now`, tested against a partial index) is parsed again at every run.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(|e| StoreError::Open(Cause::of(e)))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(Cause::of(e))
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(Cause::of(e))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::archive::{bound, conversation_filter, placeholder};
    use super::deliveries::{DEAD_OF, DELIVERED_SINCE, PENDING_OF, RECEIVED_SINCE, next_connector};
    use super::maintenance::{MENTIONED_IN_ATTEMPTS, MENTIONED_IN_BODIES, OF_VISITOR, PURGE_PAGE};
    use super::queue::DUE_OF_CONNECTOR;
    use super::schema::{MENTIONS_MIGRATION, MIGRATIONS};
    use super::*;
    use crate::model::Timestamp;
    use crate::store::{
        Archive, CONVERSATION_COLUMNS, DeliveryFilter, DeliveryState, FilterSql, Inbox,
        IngestOutcome, Maintenance, NewSession, NewVersion, Queue, Sessions,
    };
    use crate::store::{ConversationCursor, ConversationFilter};

    fn version(channel: u64) -> NewVersion {
        let body = format!(r#"{{"accountId": 208, "channel": {{"id": {channel}}}}}"#);
        let parsed = crate::sources::Source::Smartsupp
            .parse(body.as_bytes())
            .expect("parses");
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
            matches!(&failed, Err(StoreError::Database(e)) if e.to_string().contains("no_such_table")),
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
