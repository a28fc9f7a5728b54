//! `nexysync bench --files`: file upload and download throughput, end to end through the
//! agents' client (chunked encryption, the API's declare and commit, the CDN), beside two
//! plain copies of the same bytes on the same disk in the same run: one into the page
//! cache only, one `fsync`ed (as the CDN's uploads and the client's downloads are); and
//! the peak memory of the CDN, run as its own `nexysync-cdn` process so its memory can be
//! read alone.
//!
//! The bench starts its own API in this process (its own stream prefix and database on
//! the configured NATS and PostgreSQL, removed at the end) and its own CDN child, so it
//! needs no running server.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nexysync_domain::blob_url::UrlSecret;
use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
use nexysync_domain::event::{Actor, AgentRegistered, Draft, EventBody, ProjectCreated};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName};
use nexysync_mcp::client::{Client, FileSource, NewFile};
use nexysync_mcp::key_file::{AgentEntry, KeyFile, ProjectEntry, KEY_FILE_VERSION};
use serde::Serialize;
use tokio::io::AsyncBufReadExt;

use crate::provisioning::Provisioning;

const MIB: u64 = 1024 * 1024;

/// What to measure.
#[derive(Debug, Clone)]
pub struct FilesOptions {
    pub nats_url: String,
    /// The PostgreSQL URL of the settings; the bench uses a database of its own beside it.
    pub database_url: String,
    /// Size of the file, in MiB.
    pub mib: u64,
}

/// The files figures.
#[derive(Debug, Clone, Serialize)]
pub struct FilesReport {
    pub size_mib: u64,
    /// The better of two uploads (each a new file).
    pub upload_mib_s: f64,
    /// The better of two downloads (each of the upload just made).
    pub download_mib_s: f64,
    /// The same bytes copied file to file (read and write, 1 MiB at a time), into the
    /// page cache: a memory copy. The better of two copies.
    pub disk_copy_mib_s: f64,
    /// The same copy, `fsync`ed before the clock stops: what a durable store pays. The
    /// better of two copies.
    pub durable_copy_mib_s: f64,
    /// Peak resident memory of the `nexysync-cdn` process (VmHWM), in KiB.
    pub cdn_peak_rss_kib: u64,
    /// CPU seconds (user + system) each figure took: for a transfer, this process (the
    /// client and the API) plus the CDN's. Unlike the rates, this barely moves with the
    /// other work on a shared machine.
    pub cpu_s: CpuSeconds,
}

/// CPU seconds per figure, see [`FilesReport::cpu_s`].
#[derive(Debug, Clone, Serialize)]
pub struct CpuSeconds {
    pub upload: f64,
    pub download: f64,
    pub disk_copy: f64,
    pub durable_copy: f64,
}

impl FilesReport {
    pub fn table(&self) -> String {
        let share = |x: f64, floor: f64| 100.0 * x / floor;
        let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
        let row = |name: &str, x: f64| {
            let cached = share(x, self.disk_copy_mib_s);
            let durable = share(x, self.durable_copy_mib_s);
            format!(
                "{name:<26}{x:>9.0} MiB/s {cached:>9.0}% {:<6} {durable:>9.0}% {}\n",
                verdict(cached >= 50.0),
                verdict(durable >= 50.0),
            )
        };
        format!(
            "floors ({} MiB file): page-cache copy {:.0} MiB/s, fsynced copy {:.0} MiB/s\n\
             figure                    nexysync         share of each floor (target ≥ 50%)\n\
             {}{}\
             the fsynced copy is {:.0}% of the page-cache copy: what an upload acknowledged only \
             once on disk can reach of the latter at best\n\
             CDN peak memory (VmHWM)   {:>9.1} MiB (target < 64 MiB) {}\n\
             CPU seconds: upload {:.2}, download {:.2}, page-cache copy {:.2}, fsynced copy {:.2}\n",
            self.size_mib,
            self.disk_copy_mib_s,
            self.durable_copy_mib_s,
            row("upload", self.upload_mib_s),
            row("download", self.download_mib_s),
            share(self.durable_copy_mib_s, self.disk_copy_mib_s),
            self.cdn_peak_rss_kib as f64 / 1024.0,
            verdict(self.cdn_peak_rss_kib < 64 * 1024),
            self.cpu_s.upload,
            self.cpu_s.download,
            self.cpu_s.disk_copy,
            self.cpu_s.durable_copy,
        )
    }
}

/// The `nexysync-cdn` child, killed on drop.
struct CdnChild {
    url: String,
    child: tokio::process::Child,
}

impl CdnChild {
    async fn start(dir: &Path, secret: &UrlSecret) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("failed to locate this executable")?;
        let cdn = exe.with_file_name("nexysync-cdn");
        if !cdn.exists() {
            bail!(
                "{} is missing: build it beside nexysync (`cargo build --release --bins`)",
                cdn.display()
            );
        }
        let mut child = tokio::process::Command::new(&cdn)
            .env("NEXYSYNC_CDN_LISTEN", "127.0.0.1:0")
            .env("NEXYSYNC_DATA_DIR", dir)
            .env("NEXYSYNC_BLOB_DIR", dir.join("blobs"))
            .env("NEXYSYNC_URL_SECRET", secret.to_hex())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {}", cdn.display()))?;
        let stdout = child.stdout.take().context("the CDN's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("nexysync-cdn did not print its address within 30 s")??
            .context("nexysync-cdn exited before printing its address")?;
        let url = line
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .with_context(|| format!("unexpected first line from nexysync-cdn: {line}"))?
            .to_owned();
        Ok(Self { url, child })
    }

    /// CPU seconds the child has used so far.
    fn cpu_s(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.child.id().context("the CDN exited")?.to_string())
    }

    /// VmHWM of the child, in KiB.
    fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("the CDN exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("failed to read the CDN's /proc status")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in the CDN's /proc status")
    }
}

/// User plus system CPU seconds process `pid` (or `self`) has used, all its threads.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("failed to read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is the 3rd field,
    // utime and stime the 14th and 15th, in clock ticks (USER_HZ, 100 on Linux).
    let after = stat.rsplit_once(") ").context("a /proc stat line")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("a /proc stat field")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// `postgres://…/name?x` with `name` replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |i| i + 2) => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Writes `mib` MiB of incompressible bytes to `path`.
fn write_source(path: &Path, mib: u64) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path).context("failed to create the bench file")?;
    let mut state = rand::random::<u64>() | 1;
    let mut buf = vec![0u8; MIB as usize];
    for _ in 0..mib {
        for word in buf.chunks_exact_mut(8) {
            // xorshift64: fast, and nothing compresses it.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&buf)
            .context("failed to write the bench file")?;
    }
    // On disk before anything is measured: its writeback must not slow the floors down.
    file.sync_all().context("failed to write the bench file")?;
    Ok(())
}

/// A plain file-to-file copy, read and write 1 MiB at a time: the floor. `durable`: the
/// copy is `fsync`ed before the clock stops.
fn plain_copy(from: &Path, to: &Path, durable: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut source = std::fs::File::open(from)?;
    let mut dest = std::fs::File::create(to)?;
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dest.write_all(&buf[..n])?;
    }
    dest.flush()?;
    if durable {
        dest.sync_all()?;
    }
    Ok(started.elapsed())
}

/// Whether files `a` and `b` hold the same bytes, compared a block at a time (cheaper than
/// a digest of each, which would crowd the machine between two measured transfers).
fn same_contents(a: &Path, b: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut left, mut right) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let n = a.read(&mut left)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut right[..n])?;
        if left[..n] != right[..n] {
            return Ok(false);
        }
    }
}

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64().max(1e-9)
}

/// Runs the files bench.
pub async fn run(options: &FilesOptions) -> anyhow::Result<FilesReport> {
    anyhow::ensure!(options.mib > 0, "--file-mib must be positive");
    let dir = tempfile::tempdir().context("failed to create a temporary directory")?;
    let suffix = hex::encode(rand::random::<[u8; 5]>());
    let prefix = format!("benchfiles{suffix}");
    let database = format!("nexysync_bench_files_{suffix}");
    let result = measure(options, dir.path(), &prefix, &database).await;
    cleanup(options, &prefix, &database).await;
    result
}

async fn measure(
    options: &FilesOptions,
    dir: &Path,
    prefix: &str,
    database: &str,
) -> anyhow::Result<FilesReport> {
    let secret = UrlSecret::generate();
    let cdn = CdnChild::start(dir, &secret).await?;
    let admin =
        nexysync_api::Secret::new(format!("nsadm_{}", hex::encode(rand::random::<[u8; 16]>())));
    let mut api = nexysync_api::Settings::new(
        options.nats_url.clone(),
        with_database(&options.database_url, database),
        admin.clone(),
    );
    api.listen = "127.0.0.1:0".parse().context("listen address")?;
    api.stream_prefix = prefix.to_owned();
    api.files.cdn_url = cdn.url.clone();
    api.files.cdn_internal_url = cdn.url.clone();
    api.files.url_secret = secret;
    api.files.quota_bytes = u64::MAX;
    let app = nexysync_api::Application::build(api)
        .await
        .context("failed to start the bench's API (are NATS and PostgreSQL running?)")?;
    let server = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let client = provision(&server, admin).await?;
    let source = dir.join("source.bin");
    eprintln!("bench: writing a {} MiB file…", options.mib);
    write_source(&source, options.mib)?;
    let bytes = options.mib * MIB;

    eprintln!("bench: plain disk copies (page cache, then fsynced; the better of two each)…");
    let cpu = || -> anyhow::Result<f64> { Ok(cpu_seconds("self")? + cdn.cpu_s()?) };
    // Each floor is the better of two copies: on a shared machine the first copy into a
    // full page cache often pays for reclaiming it, which is no floor.
    let floor = |durable: bool| -> anyhow::Result<(Duration, f64)> {
        let mut best: Option<(Duration, f64)> = None;
        for _ in 0..2 {
            let before = cpu()?;
            let took = plain_copy(&source, &dir.join("copy.bin"), durable)?;
            let used = cpu()? - before;
            std::fs::remove_file(dir.join("copy.bin")).ok();
            keep_faster(&mut best, (took, used));
        }
        best.context("a floor copy")
    };
    let (copy_took, copy_cpu) = floor(false)?;
    let (durable_took, durable_cpu) = floor(true)?;

    // Each transfer is the better of two, like the floors: the first write into pages the
    // copies just freed can pay for the machine handing them back (seen here as the
    // kernel's copy into the page cache taking five times as long in one run of four).
    let mut upload: Option<(Duration, f64)> = None;
    let mut download: Option<(Duration, f64)> = None;
    let downloaded = dir.join("downloaded.bin");
    for round in 1..=2 {
        eprintln!("bench: upload ({round} of 2)…");
        let before = cpu()?;
        let started = Instant::now();
        let (appended, _) = client
            .upload_file(NewFile {
                source: FileSource::Path(source.clone()),
                name: "bench.bin".into(),
                media_type: None,
                to: None,
            })
            .await
            .context("the upload failed")?;
        keep_faster(&mut upload, (started.elapsed(), cpu()? - before));

        eprintln!("bench: download ({round} of 2)…");
        let before = cpu()?;
        let started = Instant::now();
        client
            .download_file(appended.id, &downloaded)
            .await
            .context("the download failed")?;
        keep_faster(&mut download, (started.elapsed(), cpu()? - before));
        anyhow::ensure!(
            same_contents(&source, &downloaded)?,
            "the downloaded file differs from the uploaded one"
        );
        std::fs::remove_file(&downloaded).ok();
    }
    let ((upload_took, upload_cpu), (download_took, download_cpu)) = (
        upload.context("an upload")?,
        download.context("a download")?,
    );
    let cdn_peak_rss_kib = cdn.peak_rss_kib()?;

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    drop(cdn);
    Ok(FilesReport {
        size_mib: options.mib,
        upload_mib_s: mib_per_s(bytes, upload_took),
        download_mib_s: mib_per_s(bytes, download_took),
        disk_copy_mib_s: mib_per_s(bytes, copy_took),
        durable_copy_mib_s: mib_per_s(bytes, durable_took),
        cdn_peak_rss_kib,
        cpu_s: CpuSeconds {
            upload: upload_cpu,
            download: download_cpu,
            disk_copy: copy_cpu,
            durable_copy: durable_cpu,
        },
    })
}

/// Keeps `run` (its time and CPU seconds) in `best` if it is the faster.
fn keep_faster(best: &mut Option<(Duration, f64)>, run: (Duration, f64)) {
    if best.is_none_or(|(fastest, _)| run.0 < fastest) {
        *best = Some(run);
    }
}

/// A project with one agent on the bench's API, and that agent's client.
async fn provision(server: &str, admin: nexysync_api::Secret) -> anyhow::Result<Client> {
    let provisioning = Provisioning::new(server.to_owned(), admin)?;
    let project = ProjectId::generate();
    let owner = SigningKey::generate();
    let name = ProjectName::parse("bench-files").context("project name")?;
    let created = Draft::new(
        project,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: name.clone(),
            owner_key: owner.public_key(),
            retention: Default::default(),
        }),
    )
    .sign(&owner);
    provisioning
        .create_project(&created)
        .await
        .context("failed to create the bench project")?;
    let agent = AgentId::generate();
    let agent_name = AgentName::parse("bencher").context("agent name")?;
    let signing_key = SigningKey::generate();
    let token = AgentToken::generate();
    let registered = Draft::new(
        project,
        Actor::Owner,
        EventBody::AgentRegistered(AgentRegistered {
            agent,
            name: agent_name.clone(),
            signing_key: signing_key.public_key(),
            token_hash: token.hash(),
        }),
    )
    .sign(&owner);
    provisioning
        .register_agent(project, &registered)
        .await
        .context("failed to register the bench agent")?;
    let client = Client::new(KeyFile {
        version: KEY_FILE_VERSION,
        server: server.to_owned(),
        project: ProjectEntry {
            id: project,
            name,
            owner_key: owner.public_key(),
        },
        agent: AgentEntry {
            id: agent,
            name: agent_name,
        },
        token,
        project_key: ProjectKey::generate(),
        signing_key,
    })?;
    // The agent is usable once the read models list it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.verify_identity().await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bench agent was not listed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(client)
}

async fn cleanup(options: &FilesOptions, prefix: &str, database: &str) {
    if let Ok(nats) = async_nats::connect(&options.nats_url).await {
        let jetstream = async_nats::jetstream::new(nats);
        // The in-process API made both: the log and the presence stream.
        for stream in ["events", "presence"] {
            let _ = jetstream.delete_stream(format!("{prefix}_{stream}")).await;
        }
    }
    let admin_db = with_database(&options.database_url, "postgres");
    if let Ok(pool) = sqlx::PgPool::connect(&admin_db).await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&pool)
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_bench_database_sits_beside_the_configured_one() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/nexysync", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b"), "postgres://h/b");
    }
}
