//! Limits kept in the database, so that they hold for a whole deployment and not per node:
//! - token buckets: every node takes from the same bucket, in one statement that refills it,
//!   takes a token if one is there and says whether it did;
//! - socket slots: the transcript sockets each student holds open, on any node.

use chrono::{DateTime, Utc};
use domain::{NodeId, UserId};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::model::StoreKind;
use crate::store::{with_pool, Store};

/// A bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSize {
    /// Requests a client may make at once.
    pub capacity: f64,
    /// Requests the bucket regains per second.
    pub refill_per_sec: f64,
}

impl BucketSize {
    /// A limit of `limit` requests a minute, which may all come at once.
    pub fn per_minute(limit: u32) -> Self {
        Self {
            capacity: f64::from(limit),
            refill_per_sec: f64::from(limit) / 60.0,
        }
    }

    /// Seconds until an empty bucket is full again (an idle bucket older than this is as good as
    /// absent).
    pub fn full_after_secs(&self) -> f64 {
        self.capacity / self.refill_per_sec
    }
}

/// What taking from a bucket gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Taken {
    Allowed,
    /// Refused: a token is there again in this many seconds.
    Refused {
        retry_after_secs: f64,
    },
}

/// The take from a bucket in one statement: refill it up to now (`$5`, at `$4` a second, to at
/// most `$3`), take a token if there is one, and say whether it did. `$least` and `$greatest`
/// are the two databases' names for the same functions.
macro_rules! take_from_bucket_sql {
    ($least:literal, $greatest:literal) => {
        concat!(
            "INSERT INTO rate_buckets (limit_name, client, tokens, allowed, updated_at) ",
            "VALUES ($1, $2, $3 - 1, TRUE, $5) ",
            "ON CONFLICT (limit_name, client) DO UPDATE SET ",
            "tokens = ",
            $least,
            "($3, rate_buckets.tokens + ",
            $greatest,
            "(0, $5 - rate_buckets.updated_at) * $4) ",
            "- CASE WHEN ",
            $least,
            "($3, rate_buckets.tokens + ",
            $greatest,
            "(0, $5 - rate_buckets.updated_at) * $4) >= 1 THEN 1 ELSE 0 END, ",
            "allowed = ",
            $least,
            "($3, rate_buckets.tokens + ",
            $greatest,
            "(0, $5 - rate_buckets.updated_at) * $4) >= 1, ",
            "updated_at = ",
            $greatest,
            "(rate_buckets.updated_at, $5) ",
            "RETURNING allowed, tokens"
        )
    };
}
const TAKE_FROM_BUCKET_SQLITE: &str = take_from_bucket_sql!("MIN", "MAX");
const TAKE_FROM_BUCKET_POSTGRES: &str = take_from_bucket_sql!("LEAST", "GREATEST");

impl Store {
    /// Takes one request from `client`'s bucket of the limit `limit_name`, refilled up to `now`.
    /// The read, the refill and the take are one statement, so nodes taking from one bucket at
    /// once never take the same token twice.
    pub async fn take_from_bucket(
        &self,
        limit_name: &str,
        client: &str,
        size: BucketSize,
        now: DateTime<Utc>,
    ) -> Result<Taken> {
        if size.capacity < 1.0 || size.refill_per_sec <= 0.0 {
            return Err(StoreError::Invalid(
                "a rate limit allows at least one request and refills".to_owned(),
            ));
        }
        let sql = match self.kind() {
            StoreKind::Sqlite => TAKE_FROM_BUCKET_SQLITE,
            StoreKind::Postgres => TAKE_FROM_BUCKET_POSTGRES,
        };
        let (allowed, tokens): (bool, f64) = with_pool!(self, writer, |pool| {
            sqlx::query_as(sql)
                .bind(limit_name)
                .bind(client)
                .bind(size.capacity)
                .bind(size.refill_per_sec)
                .bind(epoch_secs(now))
                .fetch_one(pool)
                .await?
        });
        Ok(if allowed {
            Taken::Allowed
        } else {
            Taken::Refused {
                retry_after_secs: (1.0 - tokens).max(0.0) / size.refill_per_sec,
            }
        })
    }

    /// Deletes the buckets nobody has touched since `idle_since` (full again, so as good as
    /// absent). Returns how many.
    pub async fn forget_idle_buckets(&self, idle_since: DateTime<Utc>) -> Result<u64> {
        Ok(with_pool!(self, writer, |pool| {
            sqlx::query("DELETE FROM rate_buckets WHERE updated_at < $1")
                .bind(epoch_secs(idle_since))
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

/// Counts one socket slot; a slot counted already (its id) stays as it is.
const INSERT_SOCKET_SLOT: &str = "INSERT INTO socket_slots (id, user_id, node_id, opened_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING";

/// One transcript socket counted against its student's limit; give it back with
/// [`Store::release_socket_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketSlotId(Uuid);

impl Store {
    /// Counts one more open socket for `user` on `node`, unless the student already holds
    /// `limit` on all nodes together (`None`). The count and the insert are one transaction
    /// under a lock per student, so two nodes cannot both hand out the last slot. The node must
    /// be in the registry: its slots are deleted with it.
    pub async fn take_socket_slot(
        &self,
        user: UserId,
        node: NodeId,
        limit: u32,
        at: DateTime<Utc>,
    ) -> Result<Option<SocketSlotId>> {
        let id = Uuid::new_v4();
        let user_id = *user.as_uuid();
        let is_postgres = self.kind() == StoreKind::Postgres;
        let taken = with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            if is_postgres {
                // SQLite's writer is one connection: its transactions never overlap.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
                    .bind(user_id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            let open: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM socket_slots WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let taken = open < i64::from(limit);
            if taken {
                sqlx::query(INSERT_SOCKET_SLOT)
                    .bind(id)
                    .bind(user_id)
                    .bind(*node.as_uuid())
                    .bind(crate::rows::to_micros(at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            taken
        });
        Ok(taken.then_some(SocketSlotId(id)))
    }

    /// The slots `node` holds that were opened before `opened_before`, so that the node can give
    /// back any it no longer knows of.
    pub async fn socket_slots_of(
        &self,
        node: NodeId,
        opened_before: DateTime<Utc>,
    ) -> Result<Vec<SocketSlotId>> {
        let ids: Vec<Uuid> = with_pool!(self, reader, |pool| {
            sqlx::query_scalar("SELECT id FROM socket_slots WHERE node_id = $1 AND opened_at < $2")
                .bind(*node.as_uuid())
                .bind(crate::rows::to_micros(opened_before))
                .fetch_all(pool)
                .await?
        });
        Ok(ids.into_iter().map(SocketSlotId).collect())
    }

    /// Counts again the slots of sockets still open on `node` after another node took it for
    /// dead and deleted its registry row and slots with it. Slots counted already are kept as
    /// they are; the student's limit is not checked, since these sockets are open.
    pub async fn restore_socket_slots(
        &self,
        node: NodeId,
        slots: &[(SocketSlotId, UserId)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin().await?;
            for (slot, user) in slots {
                sqlx::query(INSERT_SOCKET_SLOT)
                    .bind(slot.0)
                    .bind(*user.as_uuid())
                    .bind(*node.as_uuid())
                    .bind(crate::rows::to_micros(at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Gives a socket's slot back.
    pub async fn release_socket_slot(&self, slot: SocketSlotId) -> Result<()> {
        with_pool!(self, writer, |pool| {
            sqlx::query("DELETE FROM socket_slots WHERE id = $1")
                .bind(slot.0)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

fn epoch_secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1_000_000.0
}
