//! Dashboard sessions on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db};
use crate::model::Timestamp;
use crate::store::{NewSession, Sessions, StoreError, ms};

#[async_trait]
impl Sessions for SqliteStore {
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
