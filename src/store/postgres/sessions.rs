//! Dashboard sessions on PostgreSQL, shared by every replica.

use async_trait::async_trait;

use super::{PostgresStore, column};
use crate::model::Timestamp;
use crate::store::{NewSession, Sessions, StoreError, ms};

#[async_trait]
impl Sessions for PostgresStore {
    async fn open_session(&self, session: NewSession) -> Result<(), StoreError> {
        let now = ms(session.created_at);
        self.execute(
            "DELETE FROM sessions WHERE expires_at <= $1 OR idle_until <= $1",
            &[&now],
        )
        .await?;
        self.execute(
            "INSERT INTO sessions (id_hash, token_mac, created_at, expires_at, idle_until)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.id_hash,
                &session.token_mac,
                &now,
                &ms(session.expires_at),
                &ms(session.idle_until),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn touch_session(
        &self,
        id_hash: &str,
        now: Timestamp,
        idle_until: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let rows = self
            .query(
                "UPDATE sessions SET idle_until = $3
                 WHERE id_hash = $1 AND expires_at > $2 AND idle_until > $2
                 RETURNING token_mac",
                &[&id_hash, &ms(now), &ms(idle_until)],
            )
            .await?;
        rows.first().map(|r| column::<String>(r, 0)).transpose()
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
            .await
            .map(|_| ())
    }
}
