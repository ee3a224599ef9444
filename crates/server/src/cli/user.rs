use anyhow::{bail, Context};
use domain::{Role, Username};

use super::{read_stdin_all, UserCommand};
use crate::auth::password::MIN_PASSWORD_LEN;
use crate::auth::PasswordHasher;
use crate::config::Config;

pub(super) async fn run(
    store: &store::Store,
    config: &Config,
    command: UserCommand,
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            username,
            password_stdin,
            blocked,
            role,
        } => {
            let (password, generated) = if password_stdin {
                let input = read_stdin_all()?;
                (input.lines().next().unwrap_or_default().to_owned(), false)
            } else {
                (generate_password(), true)
            };
            let hasher = PasswordHasher::new(config.bcrypt_cost).await?;
            add_user_with_role(store, &hasher, &username, &password, blocked, role).await?;
            println!(
                "created {role} {username}{}",
                if blocked { " (blocked)" } else { "" }
            );
            if generated {
                println!("password: {password}");
                println!("(shown once; give it to the student through a private channel)");
            }
            Ok(())
        }
        UserCommand::SetRole { username, role } => {
            if !store
                .set_role(&username, role)
                .await
                .context("cannot update the user")?
            {
                bail!("no user named {username}");
            }
            println!("{username} is now {role}");
            Ok(())
        }
        UserCommand::Block { username } => set_blocked(store, &username, true).await,
        UserCommand::Unblock { username } => set_blocked(store, &username, false).await,
        UserCommand::List => {
            let users = store.list_users().await?;
            println!(
                "{:<40} {:<8} {:<8} {:<26} id",
                "username", "role", "blocked", "created"
            );
            for user in users {
                println!(
                    "{:<40} {:<8} {:<8} {:<26} {}",
                    user.username,
                    user.role,
                    if user.is_blocked { "yes" } else { "no" },
                    user.created_at.to_rfc3339(),
                    user.id
                );
            }
            Ok(())
        }
    }
}

/// Creates a student account with a bcrypt-hashed password. Used by `seed-demo` and tests.
pub async fn add_user(
    store: &store::Store,
    hasher: &PasswordHasher,
    username: &Username,
    password: &str,
    blocked: bool,
) -> anyhow::Result<store::User> {
    add_user_with_role(store, hasher, username, password, blocked, Role::Student).await
}

/// Creates an account of either role with a bcrypt-hashed password (`user add`).
pub async fn add_user_with_role(
    store: &store::Store,
    hasher: &PasswordHasher,
    username: &Username,
    password: &str,
    blocked: bool,
    role: Role,
) -> anyhow::Result<store::User> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        bail!("password must be at least {MIN_PASSWORD_LEN} characters");
    }
    let hash = hasher
        .hash(password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .create_user_with_role(username, &hash, blocked, role)
        .await
        .map_err(|e| match e {
            store::StoreError::Conflict(_) => {
                anyhow::anyhow!("a user named {username} already exists")
            }
            other => anyhow::Error::new(other).context("cannot create the user"),
        })
}

async fn set_blocked(
    store: &store::Store,
    username: &Username,
    blocked: bool,
) -> anyhow::Result<()> {
    let found = store
        .set_blocked(username, blocked)
        .await
        .context("cannot update the user")?;
    if !found {
        bail!("no user named {username}");
    }
    println!(
        "{username} is now {}",
        if blocked { "blocked" } else { "unblocked" }
    );
    Ok(())
}

/// 20 characters from an alphabet without look-alikes (no 0/O, 1/l/I).
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
