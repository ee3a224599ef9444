//! What every handler can reach.

use std::sync::Arc;

use crate::auth::{JwtKeys, PasswordHasher};
use crate::config::Config;
use crate::counselors::CategoryCache;
use crate::middleware::RateLimiters;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: store::Store,
    pub jwt: Arc<JwtKeys>,
    pub passwords: PasswordHasher,
    pub rate_limits: Arc<RateLimiters>,
    pub categories: CategoryCache,
}
