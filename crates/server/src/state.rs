//! What every handler can reach.

use std::sync::Arc;

use crate::auth::{JwtKeys, PasswordHasher};
use crate::calls::{CallManager, RemoteCalls};
use crate::config::Config;
use crate::counselors::CategoryCache;
use crate::crisis_desk::CrisisDesk;
use crate::middleware::RateLimiters;
use crate::routes::live::SocketSlots;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: store::Store,
    pub jwt: Arc<JwtKeys>,
    pub passwords: PasswordHasher,
    pub rate_limits: Arc<RateLimiters>,
    pub categories: CategoryCache,
    /// Live calls on this node.
    pub calls: Arc<CallManager>,
    /// Calls running on other nodes that this node's transcript sockets follow.
    pub remote: Arc<RemoteCalls>,
    /// Requests passed on to the node that runs a call.
    pub peers: reqwest::Client,
    /// Open transcript WebSockets per student.
    pub sockets: SocketSlots,
    /// Where flagged utterances reach staff on duty (staff page, webhook).
    pub crisis_desk: CrisisDesk,
}
