//! Router composition and the running server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::{JwtKeys, PasswordHasher};
use crate::calls::CallManager;
use crate::config::Config;
use crate::counselors::CategoryCache;
use crate::crisis_desk::CrisisDesk;
use crate::error::{method_not_allowed, route_not_found};
use crate::middleware::{request_id, security_headers, RateLimiters};
use crate::routes;
use crate::routes::live::SocketSlots;
use crate::state::AppState;

/// Opens the store, runs migrations and prepares everything the handlers need.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let store = crate::cli::open_store(&config).await?;
    store.migrate().await?;
    let passwords = PasswordHasher::new(config.bcrypt_cost).await?;
    let crisis_desk = CrisisDesk::new(config.crisis_webhook.clone());
    let calls = Arc::new(CallManager::new(
        store.clone(),
        config.voice.clone(),
        crisis_desk.clone(),
    ));
    Ok(AppState {
        jwt: Arc::new(JwtKeys::new(&config.jwt_secret, config.jwt_expiration)),
        rate_limits: Arc::new(RateLimiters::new(&config.rate_limits, &store)),
        categories: CategoryCache::new(store.clone()),
        sockets: SocketSlots::new(&store, calls.node()),
        calls,
        remote: Arc::default(),
        peers: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?,
        crisis_desk,
        passwords,
        store,
        config: Arc::new(config),
    })
}

/// The whole HTTP application. The API is nested twice, at `/api/v1` and at `/api`.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = documented_api();
    // The same paths, documented once; `/api/...` is an alias.
    let alias = api_router().split_for_parts().0;

    let cors = cors(&state.config.allowed_origins);
    let openapi_alias = openapi.clone();
    Router::new()
        .merge(api)
        .nest("/api", alias)
        .route(
            "/api/openapi.json",
            get(move || async move { axum::Json(openapi_alias) }),
        )
        .merge(SwaggerUi::new("/api/docs").url("/api/v1/openapi.json", openapi))
        .merge(routes::live::routes())
        .merge(routes::staff::socket_routes())
        .merge(crate::web::routes())
        .merge(crate::metrics::routes(&state))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::staff_gate,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(cors)
        .layer(axum::middleware::from_fn(
            security_headers::security_headers,
        ))
        .layer(axum::middleware::from_fn(request_id::request_id))
        .with_state(state)
}

/// The `/api/v1` routes and the OpenAPI document that describes them.
fn documented_api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut openapi) = OpenApiRouter::with_openapi(crate::openapi::base())
        .nest("/api/v1", api_router())
        .split_for_parts();
    openapi.servers = None;
    crate::openapi::add_error_examples(&mut openapi);
    (api, openapi)
}

/// The OpenAPI document the server serves at `/api/v1/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    documented_api().1
}

fn api_router() -> OpenApiRouter<AppState> {
    routes::api_routes()
}

fn cors(allowed: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = allowed
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::CONTENT_DISPOSITION,
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Binds `HOST:PORT` (port 0 picks a free one) and builds the app.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let address = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        let state = build_state(config).await?;
        let listening_on = listener
            .local_addr()
            .map_err(|e| anyhow::anyhow!("cannot read the address listened on: {e}"))?;
        crate::nodes::join(&state, listening_on).await;
        Ok(Self {
            listener,
            router: router(state.clone()),
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the process gets Ctrl-C / SIGTERM; also runs the background jobs.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then shuts down gracefully: new rooms are refused
    /// (`503 SHUTDOWN_001` with `Retry-After`) while every live call is ended through the normal
    /// end path, for at most [`SHUTDOWN_CALLS_WAIT`]; then no new connections are accepted and
    /// the open ones get at most [`SHUTDOWN_CONNECTIONS_WAIT`] to finish. The background jobs
    /// stop last.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let jobs = crate::jobs::spawn(self.state.clone());
        let calls = crate::jobs::spawn_call_housekeeping(self.state.clone());
        let heartbeat = crate::nodes::spawn_heartbeat(self.state.clone(), self.local_addr());
        let remote_calls = tokio::spawn(self.state.remote.clone().listen(
            self.state.store.clone(),
            self.state.calls.clone(),
            self.state.crisis_desk.clone(),
        ));
        let stop_beating = heartbeat.abort_handle();
        let state = self.state.clone();
        let (drained, calls_ended) = tokio::sync::oneshot::channel::<()>();
        let serving = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!(
                live_calls = state.calls.active_calls(),
                "shutting down: no new rooms; ending the live calls"
            );
            let left = state.calls.drain(SHUTDOWN_CALLS_WAIT).await;
            if left > 0 {
                tracing::warn!(left, "shutting down with calls that did not end in time");
            }
            // Stopped first, so no late beat records the node again.
            stop_beating.abort();
            if left == 0 {
                crate::nodes::leave(&state).await;
            }
            let _ = drained.send(());
        });
        let mut server = tokio::spawn(async move { serving.await });
        let result = tokio::select! {
            finished = &mut server => finished.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            () = async {
                match calls_ended.await {
                    Ok(()) => tokio::time::sleep(SHUTDOWN_CONNECTIONS_WAIT).await,
                    // The server stopped on its own; its own arm reports how.
                    Err(_) => std::future::pending().await,
                }
            } => {
                tracing::warn!("shutting down: closing connections still open");
                server.abort();
                Ok(())
            }
        };
        jobs.abort();
        calls.abort();
        heartbeat.abort();
        remote_calls.abort();
        tracing::info!("stopped");
        result
    }
}

/// How long shutting down waits for the live calls to end (each ends through the normal path
/// and waits up to its own 5 s for its agent; they end together).
pub const SHUTDOWN_CALLS_WAIT: Duration = Duration::from_secs(10);
/// How long, after the calls, open connections (requests under way, sockets) may take to close.
pub const SHUTDOWN_CONNECTIONS_WAIT: Duration = Duration::from_secs(5);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
