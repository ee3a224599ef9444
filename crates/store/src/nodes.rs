//! The node registry: every running server records itself (its address, how many calls it can
//! hold and holds) and beats every few seconds. A node whose heartbeat has stopped is dead; the
//! sessions it ran are closed by whichever node notices first, as a restart closes what a crash
//! left open.
//!
//! Times are the nodes' own clocks, which a deployment keeps in step (NTP): a dead node is one
//! silent for many seconds, far beyond the clocks' differences.

use chrono::{DateTime, Utc};
use domain::NodeId;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::model::{SessionEndReason, SessionRecord};
use crate::rows::{to_micros, SessionRow, SESSION_COLUMNS};
use crate::store::{with_pool, Store};

/// What a node records about itself when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    pub id: NodeId,
    /// Where the other nodes reach this one: its HTTP address (at most 255 characters).
    pub address: String,
    /// How many calls it can run at once.
    pub capacity: u32,
}

/// A node as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRecord {
    pub id: Uuid,
    pub address: String,
    pub capacity: i64,
    pub live_calls: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// Which sessions without a node are taken to be left over (sessions made before the registry,
/// or by tools, name no node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unowned {
    /// Closed: nothing runs them (a node starting).
    Close,
    /// Left alone: a tool may have just made one (the periodic sweep).
    Keep,
}

impl Store {
    /// Records a node that is starting, its heartbeat at `at`.
    pub async fn register_node(&self, node: &NodeRegistration, at: DateTime<Utc>) -> Result<()> {
        if node.address.is_empty() || node.address.len() > 255 {
            return Err(StoreError::Invalid(
                "a node's address must be 1 to 255 characters".to_owned(),
            ));
        }
        let at = to_micros(at);
        with_pool!(self, writer, |pool| {
            sqlx::query(
                "INSERT INTO nodes (id, address, capacity, live_calls, started_at, heartbeat_at) \
                 VALUES ($1, $2, $3, 0, $4, $4) \
                 ON CONFLICT (id) DO UPDATE SET address = $2, capacity = $3, heartbeat_at = $4",
            )
            .bind(*node.id.as_uuid())
            .bind(&node.address)
            .bind(i64::from(node.capacity))
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A node's heartbeat: it is alive at `at` and runs `live_calls` calls. Returns `false` when
    /// the registry no longer holds the node, because another node found it silent for too long
    /// and closed its sessions (it should register again).
    pub async fn node_heartbeat(
        &self,
        id: NodeId,
        live_calls: usize,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let live_calls = i64::try_from(live_calls).unwrap_or(i64::MAX);
        let updated = with_pool!(self, writer, |pool| {
            sqlx::query("UPDATE nodes SET heartbeat_at = $1, live_calls = $2 WHERE id = $3")
                .bind(to_micros(at))
                .bind(live_calls)
                .bind(*id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(updated == 1)
    }

    /// The nodes whose last heartbeat is no older than `alive_since`, oldest first.
    pub async fn nodes_alive_since(&self, alive_since: DateTime<Utc>) -> Result<Vec<NodeRecord>> {
        Ok(with_pool!(self, reader, |pool| {
            sqlx::query_as(
                "SELECT id, address, capacity, live_calls, started_at, heartbeat_at FROM nodes \
                 WHERE heartbeat_at >= $1 ORDER BY started_at, id",
            )
            .bind(to_micros(alive_since))
            .fetch_all(pool)
            .await?
        }))
    }

    /// The live node (heartbeat no older than `alive_since`) that runs an open session's call;
    /// `None` when the session is over, names no node, or its node is dead.
    pub async fn node_running(
        &self,
        session: domain::SessionId,
        alive_since: DateTime<Utc>,
    ) -> Result<Option<NodeRecord>> {
        Ok(with_pool!(self, reader, |pool| {
            sqlx::query_as(
                "SELECT n.id, n.address, n.capacity, n.live_calls, n.started_at, n.heartbeat_at \
                 FROM sessions s JOIN nodes n ON n.id = s.node_id \
                 WHERE s.id = $1 AND s.ended_at IS NULL AND n.heartbeat_at >= $2",
            )
            .bind(*session.as_uuid())
            .bind(to_micros(alive_since))
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Removes a node that stopped after ending its calls.
    pub async fn remove_node(&self, id: NodeId) -> Result<()> {
        with_pool!(self, writer, |pool| {
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(*id.as_uuid())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Closes every open session whose node is dead (no heartbeat since `alive_since`, or no
    /// longer registered), and with [`Unowned::Close`] every open session that names no node;
    /// then forgets the dead nodes. Each session ends at its last stored line (at its start when
    /// it has none), never at the moment it is closed, with [`SessionEndReason::ServerRestart`].
    /// Returns the sessions it closed. A session that something else ends meanwhile keeps that
    /// end (the update only touches open sessions), so nodes sweeping at once close each one once.
    pub async fn close_sessions_of_dead_nodes(
        &self,
        alive_since: DateTime<Utc>,
        unowned: Unowned,
    ) -> Result<Vec<SessionRecord>> {
        let alive_since = to_micros(alive_since);
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.ended_at IS NULL AND CASE \
             WHEN s.node_id IS NULL THEN $2 \
             ELSE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = s.node_id AND n.heartbeat_at >= $1) \
             END ORDER BY s.started_at"
        );
        let orphans: Vec<SessionRow> = with_pool!(self, writer, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(alive_since)
                .bind(unowned == Unowned::Close)
                .fetch_all(pool)
                .await?
        });
        let mut closed = Vec::new();
        for orphan in orphans {
            let session = SessionRecord::try_from(orphan)?;
            let lines: Vec<DateTime<Utc>> = with_pool!(self, writer, |pool| {
                sqlx::query_scalar(
                    "SELECT \"timestamp\" FROM transcript_messages WHERE session_id = $1",
                )
                .bind(*session.id.as_uuid())
                .fetch_all(pool)
                .await?
            });
            let last_line = lines.into_iter().max();
            let ended_at = last_line.map_or(session.started_at, |t| t.max(session.started_at));
            let record = self
                .end_session_because(session.id, ended_at, None, SessionEndReason::ServerRestart)
                .await?;
            if record.end_reason == Some(SessionEndReason::ServerRestart) {
                closed.push(record);
            }
        }
        with_pool!(self, writer, |pool| {
            sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
                .bind(alive_since)
                .execute(pool)
                .await?;
        });
        Ok(closed)
    }
}

/// A job that must run on one node at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Erasing transcripts past their retention.
    TranscriptRetention,
    /// Closing the sessions of dead nodes.
    DeadNodeSweep,
}

impl Job {
    /// The PostgreSQL advisory lock key: fixed, and unlikely to meet another application's.
    const fn lock_key(self) -> i64 {
        match self {
            Job::TranscriptRetention => 0x636f_756e_0001,
            Job::DeadNodeSweep => 0x636f_756e_0002,
        }
    }
}

/// Held while a [`Job`] runs; the other nodes' [`Store::lock_job`] get `None` meanwhile. On
/// PostgreSQL it is a session advisory lock on a connection of its own, so a node that dies
/// mid-job frees it with its connection.
#[derive(Debug)]
pub struct JobLock {
    held: Option<(sqlx::pool::PoolConnection<sqlx::Postgres>, i64)>,
}

impl Store {
    /// Takes the lock of `job`, or `None` when another node holds it. With SQLite, one node per
    /// database, it is always free.
    pub async fn lock_job(&self, job: Job) -> Result<Option<JobLock>> {
        let crate::store::Backend::Postgres(pool) = &self.backend else {
            return Ok(Some(JobLock { held: None }));
        };
        let mut connection = pool.acquire().await?;
        let key = job.lock_key();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *connection)
            .await?;
        Ok(locked.then_some(JobLock {
            held: Some((connection, key)),
        }))
    }
}

impl JobLock {
    /// Lets the other nodes run the job again.
    pub async fn release(mut self) {
        if let Some((mut connection, key)) = self.held.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *connection)
                .await;
            if unlocked.is_err() {
                // Closing the connection ends its session, and the lock with it.
                connection.close_on_drop();
            }
        }
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Dropped without `release` (a job that panicked): the connection must not go back to
        // the pool still holding the lock.
        if let Some((connection, _)) = self.held.as_mut() {
            connection.close_on_drop();
        }
    }
}
