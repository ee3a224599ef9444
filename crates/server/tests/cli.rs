//! The `counsel` binary itself: arguments, exit codes, messages, and its JSON logs.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn counsel(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_counsel"));
    // Nothing from the developer's environment or .env leaks in.
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("BCRYPT_COST_FOR_TESTS", "4")
        .current_dir(data_dir);
    command
}

fn run(data_dir: &Path, args: &[&str]) -> Output {
    counsel(data_dir).args(args).output().expect("counsel runs")
}

fn run_with_stdin(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = counsel(data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn wrong_arguments_print_usage_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--bogus"][..],
        &["user"],
        &["user", "add"],
        &["category", "enable", "Astrology"],
        &["frobnicate"],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("Usage") || stderr.contains("--help"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn safety_check_classifies_each_line_and_says_which_path_decided() {
    let dir = tempfile::tempdir().unwrap();
    let models = offline::testing::models_dir();
    let out = run_with_stdin(
        dir.path(),
        &["safety", "check", "--models-dir", models.to_str().unwrap()],
        "I want to die\nmy exam went fine\ni keep going up to the top floor of the parking garage\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verdicts: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(verdicts.len(), 3);
    assert_eq!(verdicts[0]["level"], "crisis");
    assert!(verdicts[0]["rule"].is_string());
    assert_eq!(verdicts[1]["level"], "none");
    assert_eq!(verdicts[1]["decided_by"], serde_json::Value::Null);
    assert_eq!(verdicts[2]["level"], "crisis");
    assert_eq!(verdicts[2]["decided_by"], "model");
    assert!(verdicts[2]["model"]["crisis"].as_f64().unwrap() >= 0.8);
    assert!(verdicts[2]["model"]["nearest"].is_string());
}

#[test]
fn safety_check_without_the_model_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-models");
    let out = run_with_stdin(
        dir.path(),
        &["safety", "check", "--models-dir", empty.to_str().unwrap()],
        "I want to die\n",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("counsel models install") && stderr.contains("--rules-only"),
        "{stderr}"
    );
    let out = run_with_stdin(
        dir.path(),
        &["safety", "check", "--rules-only"],
        "I want to die\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(r#""decided_by":"rule""#));
}

#[test]
fn a_bad_username_says_what_format_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["user", "add", "jdoe"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(r"\DOMAIN\user"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn production_without_secrets_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = counsel(dir.path())
        .env("ENV", "production")
        .env_remove("BCRYPT_COST_FOR_TESTS")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("JWT_SECRET_KEY"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn users_and_categories_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(run(d, &["migrate"]).status.success());
    assert!(
        d.join("counsel.db").exists(),
        "SQLite database created in DATA_DIR"
    );

    let out = run_with_stdin(
        d,
        &["user", "add", r"\COLLEGE\jdoe", "--password-stdin"],
        "a long enough password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(d, &["user", "add", r"\COLLEGE\generated", "--blocked"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("password: "),
        "a generated password is shown once"
    );
    let duplicate = run_with_stdin(
        d,
        &["user", "add", r"\COLLEGE\jdoe", "--password-stdin"],
        "another password\n",
    );
    assert!(!duplicate.status.success());
    assert!(text(&duplicate.stderr).contains("already exists"));
    let short = run_with_stdin(
        d,
        &["user", "add", r"\COLLEGE\short", "--password-stdin"],
        "short\n",
    );
    assert!(!short.status.success());

    assert!(run(d, &["user", "block", r"\COLLEGE\jdoe"])
        .status
        .success());
    assert!(!run(d, &["user", "block", r"\COLLEGE\ghost"])
        .status
        .success());
    let list = text(&run(d, &["user", "list"]).stdout);
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .to_owned()
    };
    assert!(line(r"\COLLEGE\jdoe").contains("yes"));
    assert!(line(r"\COLLEGE\generated").contains("yes"));
    assert!(run(d, &["user", "unblock", r"\COLLEGE\jdoe"])
        .status
        .success());
    assert!(text(&run(d, &["user", "list"]).stdout)
        .lines()
        .any(|l| l.starts_with(r"\COLLEGE\jdoe") && l.contains(" no ")));

    assert!(run(d, &["category", "disable", "personal development"])
        .status
        .success());
    let categories = text(&run(d, &["category", "list"]).stdout);
    assert!(
        categories
            .lines()
            .any(|l| l.starts_with("Personal Development") && l.contains(" no ")),
        "{categories}"
    );
    let out = run_with_stdin(
        d,
        &["category", "set-prompt", "Career"],
        "You are a career counselor who loves \"quotes\".\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !run_with_stdin(d, &["category", "set-prompt", "Career"], "   \n")
            .status
            .success(),
        "empty prompts are refused"
    );
}

#[test]
fn staff_accounts_are_added_listed_and_demoted_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run_with_stdin(
        d,
        &[
            "user",
            "add",
            r"\COLLEGE\nurse1",
            "--role",
            "staff",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(r"created staff \COLLEGE\nurse1"));
    assert!(run(d, &["user", "add", r"\COLLEGE\jdoe"]).status.success());
    let role_of = |name: &str| {
        let list = text(&run(d, &["user", "list"]).stdout);
        let line = list
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .to_owned();
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_eq!(role_of(r"\COLLEGE\nurse1"), "staff");
    assert_eq!(
        role_of(r"\COLLEGE\jdoe"),
        "student",
        "student is the default"
    );

    let out = run(d, &["user", "set-role", r"\COLLEGE\nurse1", "student"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(role_of(r"\COLLEGE\nurse1"), "student");
    assert!(!run(d, &["user", "set-role", r"\COLLEGE\ghost", "staff"])
        .status
        .success());
    let bad = run(d, &["user", "add", r"\COLLEGE\x", "--role", "admin"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("student, staff"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn seed_demo_and_purge_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(d, &["seed-demo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&run(d, &["user", "list"]).stdout);
    for name in [
        r"\domain\testuser1",
        r"\domain\testuser2",
        r"\domain\blockeduser",
    ] {
        assert!(list.contains(name), "{list}");
    }
    assert!(list
        .lines()
        .any(|l| l.starts_with(r"\domain\blockeduser") && l.contains("yes")));

    let out = run(d, &["purge-transcripts", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("would erase"));
}

#[test]
fn serve_writes_json_logs_with_request_and_user_ids_but_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let password = "Sup3r-secret-pa55word";
    assert!(run_with_stdin(
        d,
        &["user", "add", r"\COLLEGE\jdoe", "--password-stdin"],
        &format!("{password}\n")
    )
    .status
    .success());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = counsel(d)
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut before_listening = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let listening = line.contains("counsel is listening");
        before_listening.push(line);
        if listening {
            break;
        }
    }

    let login = ureq_post(
        port,
        "/api/v1/auth/login",
        &format!(r#"{{"username": "\\COLLEGE\\jdoe", "password": "{password}"}}"#),
    );
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let token = login
        .split("\"access_token\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let _ = server.kill();
    let _ = server.wait();
    let logs: Vec<String> = before_listening
        .into_iter()
        .chain(lines.map_while(Result::ok))
        .collect();

    let finished: Vec<serde_json::Value> = logs
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every log line is JSON"))
        .filter(|v| v["fields"]["message"] == "request finished")
        .collect();
    assert_eq!(finished.len(), 1, "{logs:?}");
    assert!(finished[0]["span"]["request_id"].is_string());
    assert!(
        finished[0]["span"]["user_id"].is_string(),
        "the user id is logged once known: {}",
        finished[0]
    );
    let all = logs.join("\n");
    assert!(
        !all.contains(password) && !all.contains(&token),
        "no password or token in the logs"
    );
}

/// A minimal HTTP/1.1 POST over a plain socket (keeps this test free of an async runtime).
fn ureq_post(port: u16, path: &str, body: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
