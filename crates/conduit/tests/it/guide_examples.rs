//! The ZeroMQ Guide examples in `examples/`, run as the Guide runs them: each
//! role a process of its own.

use std::path::PathBuf;
use std::process::Command;

/// The built example `name`. A whole `cargo test` builds the examples next to
/// the test binaries; a narrower run (`cargo test --test it`) does not, so then
/// they are built here, once.
pub fn example(name: &str) -> PathBuf {
    example_with(name, &[])
}

/// The built example `name`, building the examples with `cargo build` and
/// `extra` arguments (such as `--features tokio`) when it is not there.
pub fn example_with(name: &str, extra: &[&str]) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        BUILT.call_once(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--package", "conduit", "--examples"])
                .args(extra)
                .status()
                .unwrap();
            assert!(status.success(), "cannot build the examples");
        });
    }
    assert!(path.exists(), "{} is not built", path.display());
    path
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ipc(dir: &tempfile::TempDir, name: &str) -> String {
    format!("ipc://{}/{name}.sock", dir.path().display())
}

#[test]
fn hello_world_request_reply() {
    let dir = tempfile::tempdir().unwrap();
    let out = run("guide_hello_world", &[&ipc(&dir, "hello")]);
    assert_eq!(out.matches("Received Hello").count(), 10, "{out}");
    for n in 0..10 {
        assert!(out.contains(&format!("Received World {n}\n")), "{out}");
    }
}

#[test]
fn weather_updates_publish_subscribe() {
    let dir = tempfile::tempdir().unwrap();
    let out = run("guide_weather", &[&ipc(&dir, "weather")]);
    assert!(
        out.contains("Average temperature for zipcode '10001' was "),
        "{out}"
    );
}

#[test]
fn ventilator_workers_and_sink() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        "guide_divide_and_conquer",
        &[&ipc(&dir, "tasks"), &ipc(&dir, "results")],
    );
    assert!(out.contains("Sending tasks to workers..."), "{out}");
    assert!(
        out.contains("Received 100 results; total elapsed time:"),
        "{out}"
    );
}
