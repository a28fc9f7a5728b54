//! The real binaries, and throwaway servers, as child processes of a test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The path of a workspace binary (`nexysync`, `nexysync-mcp`), built first if needed so
/// that `cargo test -p nexysync-tests` alone still runs the current code.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "nexysync",
                "-p",
                "nexysync-mcp",
                "--bins",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the binaries build");
    });
    // Tests run from target/<profile>/deps/; the binaries sit in target/<profile>/.
    let exe = std::env::current_exe().expect("the test executable has a path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name)
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1 (taken by the OS, then released for the child to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A nats-server with JetStream of this test's own, storing into `store_dir`; killed on
/// drop.
#[derive(Debug)]
pub struct ThrowawayNats {
    pub url: String,
    child: Child,
}

impl ThrowawayNats {
    pub async fn start(store_dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server is installed (make test installs it)");
        let url = format!("nats://127.0.0.1:{port}");
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        while async_nats::connect(&url).await.is_err() {
            assert!(tokio::time::Instant::now() < until, "nats-server started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { url, child }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A running `nexysync up`, killed on drop.
#[derive(Debug)]
pub struct RunningServer {
    pub url: String,
    child: Child,
}

impl RunningServer {
    /// Starts `nexysync up --listen 127.0.0.1:0` with `envs` and reads the address it
    /// prints.
    pub async fn start(envs: &[(&str, String)], data_dir: &Path) -> Self {
        let mut command = Command::new(binary("nexysync"));
        command
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            // The in-process CDN on a free port too (a test's `envs` may say otherwise).
            .env("NEXYSYNC_CDN_LISTEN", "127.0.0.1:0")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = command.spawn().expect("nexysync starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("nexysync up prints its address within 60 s")
            .expect("stdout is readable")
            .expect("nexysync up printed a line");
        let url = line
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected first line from nexysync up: {line}"))
            .to_owned();
        Self { url, child }
    }

    pub async fn stop(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            // SIGTERM: let it shut down as an operator's Ctrl-C would.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Runs the `nexysync` CLI to completion; its stdout, or a panic with its stderr.
pub async fn nexysync(args: &[&str], envs: &[(&str, String)]) -> String {
    let output = Command::new(binary("nexysync"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("nexysync runs");
    assert!(
        output.status.success(),
        "nexysync {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How a `nexysync` run ended: its exit code and what it printed.
#[derive(Debug)]
pub struct CliOutput {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `nexysync` CLI to completion, whatever its outcome.
pub async fn nexysync_output(args: &[&str], envs: &[(&str, String)]) -> CliOutput {
    let output = Command::new(binary("nexysync"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("nexysync runs");
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
