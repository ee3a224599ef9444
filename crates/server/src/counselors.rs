//! The counselor categories, cached in memory.
//!
//! Categories change rarely and usually from the command line, i.e. in another process, so the
//! cache cannot be told about every change: it re-reads the table when its copy is older than
//! [`CategoryCache::TTL`], and at once after a change made through this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::CategoryId;
use store::{CounselorCategory, Store, StoreError};
use tokio::sync::RwLock;

/// The categories as last read, and when.
type Cached = Option<(Instant, Arc<Vec<CounselorCategory>>)>;

#[derive(Clone)]
pub struct CategoryCache {
    store: Store,
    ttl: Duration,
    cached: Arc<RwLock<Cached>>,
}

impl CategoryCache {
    pub const TTL: Duration = Duration::from_secs(30);

    pub fn new(store: Store) -> Self {
        Self::with_ttl(store, Self::TTL)
    }

    pub fn with_ttl(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            cached: Arc::new(RwLock::new(None)),
        }
    }

    /// All categories (enabled or not) in display order.
    pub async fn all(&self) -> Result<Arc<Vec<CounselorCategory>>, StoreError> {
        if let Some((loaded, categories)) = self.cached.read().await.as_ref() {
            if loaded.elapsed() < self.ttl {
                return Ok(categories.clone());
            }
        }
        let mut slot = self.cached.write().await;
        // Another request may have refreshed it while this one waited for the lock.
        if let Some((loaded, categories)) = slot.as_ref() {
            if loaded.elapsed() < self.ttl {
                return Ok(categories.clone());
            }
        }
        let mut fresh = self.store.categories(true).await?;
        fresh.sort_by_key(|c| c.category.display_order());
        let fresh = Arc::new(fresh);
        *slot = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    /// Enabled categories in display order.
    pub async fn enabled(&self) -> Result<Vec<CounselorCategory>, StoreError> {
        Ok(self
            .all()
            .await?
            .iter()
            .filter(|c| c.enabled)
            .cloned()
            .collect())
    }

    /// An enabled category by id; disabled ones are not shown to students.
    pub async fn enabled_by_id(
        &self,
        id: CategoryId,
    ) -> Result<Option<CounselorCategory>, StoreError> {
        Ok(self
            .all()
            .await?
            .iter()
            .find(|c| c.id == id && c.enabled)
            .cloned())
    }

    /// Forgets the cached copy; the next read goes to the database.
    pub async fn invalidate(&self) {
        *self.cached.write().await = None;
    }
}
