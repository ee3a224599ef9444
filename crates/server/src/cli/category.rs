use anyhow::{bail, Context};

use super::{read_stdin_all, CategoryCommand};

pub(super) async fn run(store: &store::Store, command: CategoryCommand) -> anyhow::Result<()> {
    match command {
        CategoryCommand::List => {
            let mut categories = store.categories(true).await?;
            categories.sort_by_key(|c| c.category.display_order());
            println!("{:<22} {:<8} description", "name", "enabled");
            for c in categories {
                println!(
                    "{:<22} {:<8} {}",
                    c.category.name(),
                    if c.enabled { "yes" } else { "no" },
                    c.description
                );
            }
            Ok(())
        }
        CategoryCommand::Enable { name } => {
            store
                .set_category_enabled(name, true)
                .await
                .context("cannot update the category")?;
            println!("{name} is enabled");
            Ok(())
        }
        CategoryCommand::Disable { name } => {
            store
                .set_category_enabled(name, false)
                .await
                .context("cannot update the category")?;
            println!("{name} is disabled");
            Ok(())
        }
        CategoryCommand::SetPrompt { name, file } => {
            let prompt = match file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => read_stdin_all()?,
            };
            let prompt = prompt.trim();
            if prompt.is_empty() {
                bail!("the new prompt is empty");
            }
            store
                .set_category_prompt(name, prompt)
                .await
                .context("cannot update the category")?;
            println!(
                "{name}: prompt updated ({} characters)",
                prompt.chars().count()
            );
            Ok(())
        }
    }
}
