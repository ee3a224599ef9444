//! All configuration: read from the environment (and an optional `.env`) and validated here, once,
//! at start-up. Nothing else in the program reads environment variables.
//!
//! Every error names the variable and says what is wrong with it.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::services::cartesia::CartesiaConfig;
use agent::services::deepgram::DeepgramConfig;
use agent::services::gemini::GeminiConfig;
use agent::services::openai::OpenAiConfig;
use agent::transport::webrtc::{IceServer, PortRange, WebRtcConfig};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::calls::{LlmChoice, SttChoice, TtsChoice, VoiceSettings};
use crate::crisis_desk::{CrisisWebhookConfig, WebhookSecret};

/// Production bcrypt cost. Lower costs exist only for test runs (`BCRYPT_COST_FOR_TESTS`).
pub const PRODUCTION_BCRYPT_COST: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }
}

/// The JWT signing secret. Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    /// A key someone typed is refused when it is short or obviously not random (one character
    /// repeated, a short pattern): anyone who guesses it can sign tokens for any account.
    pub fn parse(secret: &str) -> Result<JwtSecret, &'static str> {
        const SHORTEST: usize = 32;
        const FEWEST_DISTINCT: usize = 8;
        if secret.len() < SHORTEST {
            return Err("must be at least 32 characters long (use e.g. `openssl rand -base64 48`)");
        }
        let distinct = secret
            .bytes()
            .collect::<std::collections::BTreeSet<u8>>()
            .len();
        if distinct < FEWEST_DISTINCT {
            return Err("is not random enough (too few different characters; use e.g. `openssl rand -base64 48`)");
        }
        Ok(JwtSecret(secret.as_bytes().to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

/// The AES-256 key for transcript text at rest. Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct TranscriptKey([u8; 32]);

impl TranscriptKey {
    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Debug for TranscriptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TranscriptKey(<redacted>)")
    }
}

/// Requests per minute allowed for each tier of the API (the architecture document's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub enabled: bool,
    /// Login attempts per client IP.
    pub auth_per_minute: u32,
    /// Login attempts per account, from any address.
    pub auth_per_account_per_minute: u32,
    /// Voice/video session creation per user.
    pub session_create_per_minute: u32,
    /// Session history listing per user.
    pub history_per_minute: u32,
    /// Transcript view and download per user.
    pub transcript_per_minute: u32,
    /// Every other authenticated endpoint, per user.
    pub default_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub jwt_secret: JwtSecret,
    pub jwt_expiration: Duration,
    pub transcript_key: TranscriptKey,
    /// Origins (`scheme://host[:port]`) allowed to call the API with credentials.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers name the real client.
    pub trusted_proxies: crate::client_address::TrustedProxies,
    /// The bearer token `GET /metrics` wants; without one there is no `/metrics`.
    pub metrics_token: Option<crate::metrics::MetricsToken>,
    /// Where the other nodes of a deployment reach this one (`scheme://host[:port]`); `None`:
    /// the address it listens on.
    pub node_address: Option<String>,
    pub transcript_retention_days: u32,
    pub rate_limits: RateLimits,
    /// A `tracing` filter directive, e.g. `info` or `server=debug,info`.
    pub log_level: String,
    pub bcrypt_cost: u32,
    /// Largest accepted JSON request body.
    pub max_body_bytes: usize,
    /// Which speech and language services calls use, and how browsers reach them.
    pub voice: VoiceSettings,
    /// Where crisis-level events are also POSTed (`CRISIS_WEBHOOK_URL`), if anywhere.
    pub crisis_webhook: Option<CrisisWebhookConfig>,
}

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

impl Config {
    /// Loads `.env` (if present in the working directory) and then reads the process environment.
    /// Variables already set in the environment win over `.env`.
    pub fn load() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        let config = Self::from_lookup(|name| std::env::var(name).ok())?;
        config.prepare_data_dir()?;
        Ok(config)
    }

    /// Creates `DATA_DIR` (mode 0700) when counsel will keep something there: the default SQLite
    /// database or the default models directory (the development secrets create it themselves).
    /// Whatever else the command creates inside it then starts out private. An existing directory
    /// is left as it is: it may be one the operator chose and shares on purpose; the files
    /// counsel writes in it are 0600 on their own.
    pub fn prepare_data_dir(&self) -> Result<(), ConfigError> {
        let default_database = self.database_url == default_database_url(&self.data_dir);
        if default_database || self.voice.models_dir.starts_with(&self.data_dir) {
            create_private_dir(&self.data_dir).map_err(|e| {
                problem(
                    "DATA_DIR",
                    format!("{} could not be created: {e}", self.data_dir.display()),
                )
            })?;
        }
        Ok(())
    }

    /// Builds the configuration from an explicit set of variables (tests use this).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let env = match get("ENV")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(problem(
                    "ENV",
                    format!("{other:?} is not one of development, production"),
                ))
            }
        };

        let host = match get("HOST") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(h) if h == "localhost" => IpAddr::from([127, 0, 0, 1]),
            Some(h) => h.parse().map_err(|_| {
                problem(
                    "HOST",
                    format!("{h:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"),
                )
            })?,
        };
        let port = parse_number::<u16>("PORT", get("PORT"), 8000)?;
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".to_owned()));

        let database_url = match get("DATABASE_URL") {
            None => default_database_url(&data_dir),
            // The store decides which back end a URL names; the value is never shown, because it
            // may hold a password.
            Some(url) => match store::DatabaseUrl::parse(&url) {
                Ok(_) => url,
                Err(_) => {
                    return Err(problem(
                        "DATABASE_URL",
                        "must start with sqlite: or postgres:// (the value is not shown because it may hold a password)",
                    ))
                }
            },
        };

        let jwt_secret = match get("JWT_SECRET_KEY") {
            Some(secret) => JwtSecret::parse(&secret).map_err(|p| problem("JWT_SECRET_KEY", p))?,
            None if env == Environment::Production => {
                return Err(problem(
                    "JWT_SECRET_KEY",
                    "is required when ENV=production (at least 32 random characters)",
                ))
            }
            None => JwtSecret(dev_secret(&data_dir, "jwt_secret.key", "JWT_SECRET_KEY")?.to_vec()),
        };

        let transcript_key = match get("TRANSCRIPT_ENCRYPTION_KEY") {
            Some(encoded) => TranscriptKey(decode_key(&encoded).map_err(|p| problem("TRANSCRIPT_ENCRYPTION_KEY", p))?),
            None if env == Environment::Production => {
                return Err(problem(
                    "TRANSCRIPT_ENCRYPTION_KEY",
                    "is required when ENV=production (32 random bytes, base64-encoded: `openssl rand -base64 32`)",
                ))
            }
            None => TranscriptKey(dev_secret(&data_dir, "transcript_encryption.key", "TRANSCRIPT_ENCRYPTION_KEY")?),
        };

        let jwt_minutes = parse_number::<u64>(
            "JWT_EXPIRATION_MINUTES",
            get("JWT_EXPIRATION_MINUTES"),
            1440,
        )?;
        if jwt_minutes == 0 || jwt_minutes > 60 * 24 * 30 {
            return Err(problem(
                "JWT_EXPIRATION_MINUTES",
                "must be between 1 and 43200 (30 days)",
            ));
        }

        let allowed_origins = match get("ALLOWED_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| parse_origin(o).map_err(|p| problem("ALLOWED_ORIGINS", p)))
                .collect::<Result<_, _>>()?,
        };

        let trusted_proxies = crate::client_address::TrustedProxies::parse(
            &get("TRUSTED_PROXIES").unwrap_or_default(),
        )
        .map_err(|p| problem("TRUSTED_PROXIES", p))?;

        let metrics_token = get("METRICS_TOKEN")
            .filter(|t| !t.is_empty())
            .map(|t| crate::metrics::MetricsToken::parse(&t))
            .transpose()
            .map_err(|p| problem("METRICS_TOKEN", p))?;

        let node_address = get("NODE_ADDRESS")
            .filter(|a| !a.trim().is_empty())
            .map(|a| parse_origin(a.trim()).map_err(|p| problem("NODE_ADDRESS", p)))
            .transpose()?;

        let transcript_retention_days = parse_number::<u32>(
            "TRANSCRIPT_RETENTION_DAYS",
            get("TRANSCRIPT_RETENTION_DAYS"),
            90,
        )?;
        if transcript_retention_days == 0 {
            return Err(problem("TRANSCRIPT_RETENTION_DAYS", "must be at least 1"));
        }

        let rate_limits = RateLimits {
            enabled: parse_bool("RATE_LIMIT_ENABLED", get("RATE_LIMIT_ENABLED"), true)?,
            auth_per_minute: parse_positive(
                "RATE_LIMIT_AUTH_PER_MINUTE",
                get("RATE_LIMIT_AUTH_PER_MINUTE"),
                10,
            )?,
            auth_per_account_per_minute: parse_positive(
                "RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE",
                get("RATE_LIMIT_AUTH_PER_ACCOUNT_PER_MINUTE"),
                10,
            )?,
            session_create_per_minute: parse_positive(
                "SESSION_RATE_LIMIT_PER_MINUTE",
                get("SESSION_RATE_LIMIT_PER_MINUTE"),
                10,
            )?,
            history_per_minute: parse_positive(
                "RATE_LIMIT_HISTORY_PER_MINUTE",
                get("RATE_LIMIT_HISTORY_PER_MINUTE"),
                50,
            )?,
            transcript_per_minute: parse_positive(
                "RATE_LIMIT_TRANSCRIPT_PER_MINUTE",
                get("RATE_LIMIT_TRANSCRIPT_PER_MINUTE"),
                20,
            )?,
            default_per_minute: parse_positive(
                "RATE_LIMIT_PER_MINUTE",
                get("RATE_LIMIT_PER_MINUTE"),
                100,
            )?,
        };

        let log_level = get("LOG_LEVEL")
            .unwrap_or_else(|| "info".to_owned())
            .to_ascii_lowercase();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(problem(
                "LOG_LEVEL",
                format!("{log_level:?} is not a level (error, warn, info, debug, trace) or filter"),
            ));
        }

        let bcrypt_cost = match get("BCRYPT_COST_FOR_TESTS") {
            None => PRODUCTION_BCRYPT_COST,
            Some(_) if env == Environment::Production => {
                return Err(problem(
                    "BCRYPT_COST_FOR_TESTS",
                    "is a test-only setting and is refused when ENV=production",
                ))
            }
            Some(raw) => {
                let cost = raw.parse::<u32>().map_err(|_| {
                    problem("BCRYPT_COST_FOR_TESTS", "must be a number from 4 to 31")
                })?;
                if !(4..=31).contains(&cost) {
                    return Err(problem(
                        "BCRYPT_COST_FOR_TESTS",
                        "must be a number from 4 to 31",
                    ));
                }
                cost
            }
        };

        let max_body_kib = parse_positive("MAX_BODY_KIB", get("MAX_BODY_KIB"), 64)?;
        let voice = voice_settings(&get, &data_dir)?;
        let crisis_webhook = crisis_webhook(&get, env)?;

        Ok(Config {
            env,
            host,
            port,
            data_dir,
            database_url,
            jwt_secret,
            jwt_expiration: Duration::from_secs(jwt_minutes * 60),
            transcript_key,
            allowed_origins,
            trusted_proxies,
            metrics_token,
            node_address,
            transcript_retention_days,
            rate_limits,
            log_level,
            bcrypt_cost,
            max_body_bytes: max_body_kib as usize * 1024,
            voice,
            crisis_webhook,
        })
    }

    /// The session cookie is `Secure` everywhere except plain-http development on this machine.
    pub fn cookie_secure(&self) -> bool {
        !(self.env == Environment::Development && self.host.is_loopback())
    }
}

/// `CRISIS_WEBHOOK_URL` (http or https; https only in production, since the body may carry a
/// student's words), its required `CRISIS_WEBHOOK_SECRET`, and `CRISIS_WEBHOOK_INCLUDE_TEXT`.
fn crisis_webhook(
    get: &dyn Fn(&str) -> Option<String>,
    env: Environment,
) -> Result<Option<CrisisWebhookConfig>, ConfigError> {
    let include_text = parse_bool(
        "CRISIS_WEBHOOK_INCLUDE_TEXT",
        get("CRISIS_WEBHOOK_INCLUDE_TEXT"),
        false,
    )?;
    let Some(raw) = get("CRISIS_WEBHOOK_URL") else {
        return Ok(None);
    };
    // The URL is not echoed: it may carry a token.
    let url: reqwest::Url = raw.parse().map_err(|_| {
        problem(
            "CRISIS_WEBHOOK_URL",
            "is not a URL like https://alerts.example.edu/counsel",
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if env == Environment::Development => {}
        "http" => {
            return Err(problem(
                "CRISIS_WEBHOOK_URL",
                "must use https when ENV=production",
            ))
        }
        _ => return Err(problem("CRISIS_WEBHOOK_URL", "must use http or https")),
    }
    let secret = get("CRISIS_WEBHOOK_SECRET").ok_or_else(|| {
        problem(
            "CRISIS_WEBHOOK_SECRET",
            "is required when CRISIS_WEBHOOK_URL is set",
        )
    })?;
    let secret = WebhookSecret::new(secret).map_err(|p| problem("CRISIS_WEBHOOK_SECRET", p))?;
    Ok(Some(CrisisWebhookConfig::new(url, secret, include_text)))
}

fn parse_number<T: std::str::FromStr>(
    variable: &'static str,
    raw: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match raw {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|_| {
            problem(
                variable,
                format!("{raw:?} is not a valid non-negative whole number"),
            )
        }),
    }
}

fn parse_positive(
    variable: &'static str,
    raw: Option<String>,
    default: u32,
) -> Result<u32, ConfigError> {
    let value = parse_number(variable, raw, default)?;
    if value == 0 {
        return Err(problem(variable, "must be at least 1"));
    }
    Ok(value)
}

fn parse_bool(
    variable: &'static str,
    raw: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(problem(variable, format!("{other:?} is not true or false"))),
    }
}

/// Normalises `https://Example.edu/` to `https://example.edu`; refuses anything that is not an origin.
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("{raw:?} is not an origin like https://counseling.example.edu"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{raw:?} must use http or https"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("{raw:?} must be scheme://host[:port] with no path"));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

fn decode_key(encoded: &str) -> Result<[u8; 32], String> {
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| "is not valid base64 (expected 32 random bytes, base64-encoded: `openssl rand -base64 32`)".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "decodes to {} bytes; it must be exactly 32 (`openssl rand -base64 32`)",
            bytes.len()
        )
    })
}

/// The SQLite database inside `DATA_DIR`, used when `DATABASE_URL` is not set.
fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("counsel.db").display())
}

/// Creates `dir` and any missing parent with mode 0700 (on unix): only counsel's own user can
/// list or enter them. A directory that exists already is left alone.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Development only: a secret generated on first use and kept in the data directory (mode 0600),
/// so tokens and encrypted transcripts survive restarts without anyone configuring anything.
fn dev_secret(
    data_dir: &Path,
    file_name: &str,
    variable: &'static str,
) -> Result<[u8; 32], ConfigError> {
    let path = data_dir.join(file_name);
    let unreadable = |e: std::io::Error| {
        problem(
            variable,
            format!(
                "not set, and the development key file {} could not be used: {e}",
                path.display()
            ),
        )
    };
    match fs::read_to_string(&path) {
        Ok(existing) => decode_key(existing.trim()).map_err(|p| {
            problem(
                variable,
                format!(
                    "not set, and the development key file {} {p}",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(data_dir).map_err(unreadable)?;
            let key: [u8; 32] = rand::random();
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(unreadable)?;
            file.write_all(BASE64.encode(key).as_bytes())
                .map_err(unreadable)?;
            Ok(key)
        }
        Err(e) => Err(unreadable(e)),
    }
}

/// The voice section: each service's provider (the cloud one when its key is set, the offline
/// model otherwise, unless `STT_PROVIDER` / `LLM_PROVIDER` / `TTS_PROVIDER` say), the models
/// directory, and how browsers reach this server over WebRTC.
fn voice_settings(
    get: &dyn Fn(&str) -> Option<String>,
    data_dir: &Path,
) -> Result<VoiceSettings, ConfigError> {
    let choice =
        |variable: &'static str, allowed: &[&str]| -> Result<Option<String>, ConfigError> {
            match get(variable).map(|v| v.to_ascii_lowercase()) {
                None => Ok(None),
                Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
                Some(v) => Err(problem(
                    variable,
                    format!("{v:?} is not one of {}", allowed.join(", ")),
                )),
            }
        };
    let required = |variable: &'static str, provider: &str| {
        get(variable).ok_or_else(|| problem(variable, format!("is required to use {provider}")))
    };

    let stt = match choice("STT_PROVIDER", &["deepgram", "local"])?
        .or_else(|| get("DEEPGRAM_API_KEY").map(|_| "deepgram".into()))
    {
        Some(p) if p == "deepgram" => {
            let mut config = DeepgramConfig::new(required("DEEPGRAM_API_KEY", "Deepgram")?);
            if let Some(model) = get("DEEPGRAM_MODEL") {
                config.model = model;
            }
            if let Some(url) = get("DEEPGRAM_API_URL") {
                config.base_url = url;
            }
            SttChoice::Deepgram(config)
        }
        _ => SttChoice::Local,
    };

    let gemini_key = get("GEMINI_API_KEY").or_else(|| get("GOOGLE_API_KEY"));
    let openai = |key: Option<String>| {
        let mut config = OpenAiConfig::new(key);
        if let Some(model) = get("OPENAI_MODEL") {
            config.model = model;
        }
        if let Some(url) = get("OPENAI_BASE_URL") {
            config.base_url = url;
        }
        config
    };
    let openai_configured = get("OPENAI_API_KEY").is_some() || get("OPENAI_BASE_URL").is_some();
    let llm_default = if gemini_key.is_some() {
        Some("gemini".to_owned())
    } else if openai_configured {
        Some("openai".to_owned())
    } else {
        None
    };
    let llm = match choice("LLM_PROVIDER", &["gemini", "openai", "local"])?.or(llm_default) {
        Some(p) if p == "gemini" => {
            let key =
                gemini_key.ok_or_else(|| problem("GEMINI_API_KEY", "is required to use Gemini"))?;
            let mut gemini = GeminiConfig::new(key);
            if let Some(model) = get("GEMINI_MODEL") {
                gemini.model = model;
            }
            if let Some(url) = get("GEMINI_API_URL") {
                gemini.base_url = url;
            }
            LlmChoice::Gemini {
                gemini,
                fallback: openai_configured.then(|| openai(get("OPENAI_API_KEY"))),
            }
        }
        Some(p) if p == "openai" => {
            if !openai_configured {
                return Err(problem(
                    "OPENAI_API_KEY",
                    "or OPENAI_BASE_URL is required to use an OpenAI-compatible model",
                ));
            }
            LlmChoice::OpenAi(openai(get("OPENAI_API_KEY")))
        }
        _ => LlmChoice::Local,
    };

    let tts = match choice("TTS_PROVIDER", &["cartesia", "local"])?
        .or_else(|| get("CARTESIA_API_KEY").map(|_| "cartesia".into()))
    {
        Some(p) if p == "cartesia" => {
            let mut config = CartesiaConfig::new(required("CARTESIA_API_KEY", "Cartesia")?);
            if let Some(voice) = get("CARTESIA_VOICE_ID") {
                config.voice_id = voice;
            }
            if let Some(model) = get("CARTESIA_MODEL") {
                config.model = model;
            }
            if let Some(url) = get("CARTESIA_API_URL") {
                config.base_url = url;
            }
            TtsChoice::Cartesia(config)
        }
        _ => TtsChoice::Local,
    };

    for variable in ["VOICE_TRANSPORT", "VIDEO_TRANSPORT"] {
        match get(variable).map(|v| v.to_ascii_lowercase()) {
            None => {}
            Some(v) if v == "local" => {}
            Some(v) => {
                return Err(problem(
                    variable,
                    format!("{v:?} is not available in this build; the supported transport is local (WebRTC straight to this server)"),
                ))
            }
        }
    }

    let mut webrtc = WebRtcConfig::default();
    if let Some(list) = get("WEBRTC_ICE_SERVERS") {
        for url in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let server = IceServer::from_url(url)
                .map_err(|e| problem("WEBRTC_ICE_SERVERS", e.to_string()))?;
            webrtc.ice_servers.push(server);
        }
    }
    webrtc.allow_private_candidates = parse_bool(
        "WEBRTC_PRIVATE_CANDIDATES",
        get("WEBRTC_PRIVATE_CANDIDATES"),
        true,
    )?;
    if let Some(range) = get("WEBRTC_UDP_PORTS") {
        let bad = || problem("WEBRTC_UDP_PORTS", "must be a port range like 40000-40999");
        let (min, max) = range.split_once('-').ok_or_else(bad)?;
        let (min, max) = (
            min.trim().parse().map_err(|_| bad())?,
            max.trim().parse().map_err(|_| bad())?,
        );
        webrtc.udp_ports =
            Some(PortRange::new(min, max).map_err(|e| problem("WEBRTC_UDP_PORTS", e.to_string()))?);
    }

    Ok(VoiceSettings {
        stt,
        llm,
        tts,
        models_dir: get("MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("models")),
        install_missing_models: parse_bool(
            "MODELS_AUTO_INSTALL",
            get("MODELS_AUTO_INSTALL"),
            true,
        )?,
        webrtc,
        max_calls: parse_positive("MAX_CALLS", get("MAX_CALLS"), 200)? as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error_variable(pairs: &[(&str, &str)]) -> &'static str {
        Config::from_vars(&vars(pairs)).unwrap_err().variable
    }

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const JWT: &str = "0123456789abcdef0123456789abcdef-jwt";

    #[test]
    fn defaults_need_nothing_configured() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            Config::from_vars(&vars(&[("DATA_DIR", dir.path().to_str().unwrap())])).unwrap();
        assert_eq!(config.port, 8000);
        assert_eq!(config.host.to_string(), "127.0.0.1");
        assert_eq!(config.jwt_expiration, Duration::from_secs(1440 * 60));
        assert_eq!(config.transcript_retention_days, 90);
        assert_eq!(config.bcrypt_cost, 12);
        assert_eq!(config.rate_limits.auth_per_minute, 10);
        assert!(
            config.database_url.starts_with("sqlite://")
                && config.database_url.ends_with("counsel.db")
        );
        assert!(!config.cookie_secure());
    }

    #[test]
    fn development_secrets_are_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let v = vars(&[("DATA_DIR", dir.path().to_str().unwrap())]);
        let first = Config::from_vars(&v).unwrap();
        let second = Config::from_vars(&v).unwrap();
        assert_eq!(first.jwt_secret.as_bytes(), second.jwt_secret.as_bytes());
        assert_eq!(first.transcript_key.bytes(), second.transcript_key.bytes());
        assert_ne!(
            first.jwt_secret.as_bytes(),
            &first.transcript_key.bytes()[..]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("jwt_secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    // L5 of the outside security test: DATA_DIR was made 0755 (world-readable).
    #[cfg(unix)]
    #[test]
    fn the_data_directory_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();

        // Development: the generated secrets create it.
        let dev = root.path().join("dev").join("data");
        Config::from_vars(&vars(&[("DATA_DIR", dev.to_str().unwrap())])).unwrap();
        assert_eq!(mode(&dev), 0o700);
        assert_eq!(mode(&root.path().join("dev")), 0o700);
        assert_eq!(mode(&dev.join("transcript_encryption.key")), 0o600);

        // Production with its secrets given: the default database lives there.
        let prod = root.path().join("prod");
        let config = Config::from_vars(&vars(&[
            ("ENV", "production"),
            ("JWT_SECRET_KEY", JWT),
            ("TRANSCRIPT_ENCRYPTION_KEY", KEY),
            ("DATA_DIR", prod.to_str().unwrap()),
        ]))
        .unwrap();
        config.prepare_data_dir().unwrap();
        assert_eq!(mode(&prod), 0o700);

        // Nothing of counsel's goes there: nothing is created.
        let unused = root.path().join("unused");
        let config = Config::from_vars(&vars(&[
            ("ENV", "production"),
            ("JWT_SECRET_KEY", JWT),
            ("TRANSCRIPT_ENCRYPTION_KEY", KEY),
            ("DATA_DIR", unused.to_str().unwrap()),
            ("DATABASE_URL", "postgres://counsel@db/counsel"),
            ("MODELS_DIR", root.path().join("models").to_str().unwrap()),
        ]))
        .unwrap();
        config.prepare_data_dir().unwrap();
        assert!(!unused.exists());
    }

    #[test]
    fn production_refuses_to_start_without_secrets() {
        assert_eq!(
            error_variable(&[("ENV", "production"), ("TRANSCRIPT_ENCRYPTION_KEY", KEY)]),
            "JWT_SECRET_KEY"
        );
        assert_eq!(
            error_variable(&[("ENV", "production"), ("JWT_SECRET_KEY", JWT)]),
            "TRANSCRIPT_ENCRYPTION_KEY"
        );
        let ok = Config::from_vars(&vars(&[
            ("ENV", "production"),
            ("JWT_SECRET_KEY", JWT),
            ("TRANSCRIPT_ENCRYPTION_KEY", KEY),
        ]))
        .unwrap();
        assert!(ok.cookie_secure());
    }

    #[test]
    fn test_only_bcrypt_cost_is_refused_in_production() {
        let err = Config::from_vars(&vars(&[
            ("ENV", "production"),
            ("JWT_SECRET_KEY", JWT),
            ("TRANSCRIPT_ENCRYPTION_KEY", KEY),
            ("BCRYPT_COST_FOR_TESTS", "4"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "BCRYPT_COST_FOR_TESTS");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let base = [("JWT_SECRET_KEY", JWT), ("TRANSCRIPT_ENCRYPTION_KEY", KEY)];
        let with = |extra: (&'static str, &'static str)| {
            let mut all = base.to_vec();
            all.push(extra);
            error_variable(&all)
        };
        assert_eq!(with(("PORT", "eighty")), "PORT");
        assert_eq!(with(("PORT", "70000")), "PORT");
        assert_eq!(with(("HOST", "my host")), "HOST");
        assert_eq!(with(("ENV", "staging")), "ENV");
        assert_eq!(with(("DATABASE_URL", "mysql://x")), "DATABASE_URL");
        // The transport's parser decides: a scheme with no host is no ICE server.
        assert_eq!(with(("WEBRTC_ICE_SERVERS", "stun:")), "WEBRTC_ICE_SERVERS");
        assert_eq!(
            with(("WEBRTC_PRIVATE_CANDIDATES", "sometimes")),
            "WEBRTC_PRIVATE_CANDIDATES"
        );
        assert_eq!(
            with(("WEBRTC_ICE_SERVERS", "http://x")),
            "WEBRTC_ICE_SERVERS"
        );
        assert_eq!(
            with(("JWT_EXPIRATION_MINUTES", "0")),
            "JWT_EXPIRATION_MINUTES"
        );
        assert_eq!(
            with(("ALLOWED_ORIGINS", "https://ok.edu,not an origin")),
            "ALLOWED_ORIGINS"
        );
        assert_eq!(
            with(("TRANSCRIPT_RETENTION_DAYS", "-1")),
            "TRANSCRIPT_RETENTION_DAYS"
        );
        assert_eq!(with(("RATE_LIMIT_ENABLED", "maybe")), "RATE_LIMIT_ENABLED");
        assert_eq!(
            with(("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")),
            "TRUSTED_PROXIES"
        );
        assert_eq!(with(("METRICS_TOKEN", "short")), "METRICS_TOKEN");
        assert_eq!(
            with(("RATE_LIMIT_HISTORY_PER_MINUTE", "0")),
            "RATE_LIMIT_HISTORY_PER_MINUTE"
        );
        assert_eq!(with(("LOG_LEVEL", "loud=[")), "LOG_LEVEL");
        for weak in ["short", &"a".repeat(32), &"abcd".repeat(10)] {
            assert_eq!(
                error_variable(&[("JWT_SECRET_KEY", weak), ("TRANSCRIPT_ENCRYPTION_KEY", KEY)]),
                "JWT_SECRET_KEY",
                "{weak}"
            );
        }
        assert_eq!(
            error_variable(&[
                ("JWT_SECRET_KEY", JWT),
                ("TRANSCRIPT_ENCRYPTION_KEY", "AAEC")
            ]),
            "TRANSCRIPT_ENCRYPTION_KEY"
        );
    }

    #[test]
    fn the_crisis_webhook_needs_its_secret_and_https_in_production() {
        let base = [("JWT_SECRET_KEY", JWT), ("TRANSCRIPT_ENCRYPTION_KEY", KEY)];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            Config::from_vars(&vars(&all))
        };
        assert!(with(&[]).unwrap().crisis_webhook.is_none());
        let url = ("CRISIS_WEBHOOK_URL", "http://127.0.0.1:9000/hook");
        let secret = ("CRISIS_WEBHOOK_SECRET", "0123456789abcdef0123");
        assert_eq!(with(&[url]).unwrap_err().variable, "CRISIS_WEBHOOK_SECRET");
        assert_eq!(
            with(&[url, ("CRISIS_WEBHOOK_SECRET", "short")])
                .unwrap_err()
                .variable,
            "CRISIS_WEBHOOK_SECRET"
        );
        assert_eq!(
            with(&[("CRISIS_WEBHOOK_URL", "not a url"), secret])
                .unwrap_err()
                .variable,
            "CRISIS_WEBHOOK_URL"
        );
        assert_eq!(
            with(&[url, secret, ("CRISIS_WEBHOOK_INCLUDE_TEXT", "perhaps")])
                .unwrap_err()
                .variable,
            "CRISIS_WEBHOOK_INCLUDE_TEXT"
        );
        let hook = with(&[url, secret]).unwrap().crisis_webhook.unwrap();
        assert!(!hook.include_text, "no text unless asked for");
        assert_eq!(hook.backoff.len() + 1, 5, "at most five attempts");
        let hook = with(&[url, secret, ("CRISIS_WEBHOOK_INCLUDE_TEXT", "true")])
            .unwrap()
            .crisis_webhook
            .unwrap();
        assert!(hook.include_text);
        assert!(!format!("{hook:?}").contains("0123456789abcdef0123"));
        assert_eq!(
            with(&[url, secret, ("ENV", "production")])
                .unwrap_err()
                .variable,
            "CRISIS_WEBHOOK_URL"
        );
        assert!(with(&[
            ("CRISIS_WEBHOOK_URL", "https://alerts.example.edu/counsel"),
            secret,
            ("ENV", "production")
        ])
        .unwrap()
        .crisis_webhook
        .is_some());
    }

    #[test]
    fn database_url_errors_never_echo_the_url() {
        let err = Config::from_vars(&vars(&[
            ("JWT_SECRET_KEY", JWT),
            ("TRANSCRIPT_ENCRYPTION_KEY", KEY),
            ("DATABASE_URL", "mysql://admin:hunter2@db"),
        ]))
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            parse_origin("https://Counsel.Example.edu/").unwrap(),
            "https://counsel.example.edu"
        );
        assert_eq!(
            parse_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert!(parse_origin("https://x.edu/path").is_err());
        assert!(parse_origin("ftp://x.edu").is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = Config::from_vars(&vars(&[
            ("JWT_SECRET_KEY", JWT),
            ("TRANSCRIPT_ENCRYPTION_KEY", KEY),
        ]))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains(JWT) && shown.contains("<redacted>"));
    }
}
