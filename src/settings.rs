//! The `nexysync` binary's settings: defaults, then an optional TOML file, then
//! `NEXYSYNC_*` environment variables (each layer overrides the one before). Command-line
//! flags (`--listen`, `--server`, …) override all three where a command offers them.
//!
//! The file is `--config FILE` (or `NEXYSYNC_CONFIG`) when given, which must then exist;
//! otherwise `<home>/config.toml` when it exists. Its keys are the field names below:
//!
//! ```toml
//! nats_url = "nats://127.0.0.1:4222"
//! database_url = "postgres://postgres@127.0.0.1:5432/nexysync"
//! stream_prefix = "nexysync"
//! url = "http://127.0.0.1:8707"
//! listen = "127.0.0.1:8707"
//! home = "~/.nexysync"
//! data_dir = "~/.local/share/nexysync"
//! quota_messages_per_day = 100000
//! quota_message_bytes = 66560
//! quota_stored_bytes = 10737418240
//! presence_heartbeat_s = 10
//! presence_timeout_s = 30
//! # admin_token = "nsadm_…"   (prefer NEXYSYNC_ADMIN_TOKEN or the generated file)
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nexysync_api::Secret;
use nexysync_domain::quota::QuotaLimits;
use serde::Deserialize;

/// Where the settings come from; [`Settings::load`] takes one so tests need not touch the
/// process environment.
pub trait Environment {
    /// The variable's value; unset and empty are the same (`FOO= nexysync …` unsets FOO).
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

/// Every setting of the binary, resolved.
#[derive(Clone)]
pub struct Settings {
    /// `NEXYSYNC_NATS_URL`: the NATS server holding the JetStream log.
    pub nats_url: String,
    /// `DATABASE_URL`: PostgreSQL for the read models (may hold a password, so secret).
    pub database_url: Secret,
    /// `NEXYSYNC_STREAM_PREFIX`: prefix of the stream and its subjects.
    pub stream_prefix: String,
    /// `NEXYSYNC_ADMIN_TOKEN`: guards provisioning. When unset, `nexysync up` generates one
    /// into `<data_dir>/admin-token` and the other commands read it from there.
    pub admin_token: Option<Secret>,
    /// `NEXYSYNC_HOME`: this machine's project files (`<home>/projects/<name>.json`).
    pub home: PathBuf,
    /// `NEXYSYNC_URL`: the API server the provisioning commands talk to.
    pub url: String,
    /// `NEXYSYNC_LISTEN`: where `nexysync up` listens.
    pub listen: SocketAddr,
    /// `NEXYSYNC_DATA_DIR`: the server's local state (the generated admin token).
    pub data_dir: PathBuf,
    /// `NEXYSYNC_SSE_HEARTBEAT_S`: seconds between SSE heartbeats (default 30).
    pub sse_heartbeat: std::time::Duration,
    /// `NEXYSYNC_QUOTA_MESSAGES_PER_DAY`, `NEXYSYNC_QUOTA_MESSAGE_BYTES`,
    /// `NEXYSYNC_QUOTA_STORED_BYTES`: every project's limits.
    pub quota: nexysync_domain::quota::QuotaLimits,
    /// `NEXYSYNC_PRESENCE_HEARTBEAT_S`: seconds between presence heartbeats (default 10).
    pub presence_heartbeat: std::time::Duration,
    /// `NEXYSYNC_PRESENCE_TIMEOUT_S`: the presence bound, seconds (default 30).
    pub presence_timeout: std::time::Duration,
}

/// The optional file layer; every key may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    nats_url: Option<String>,
    database_url: Option<String>,
    stream_prefix: Option<String>,
    admin_token: Option<String>,
    home: Option<String>,
    url: Option<String>,
    listen: Option<String>,
    data_dir: Option<String>,
    sse_heartbeat_s: Option<u64>,
    quota_messages_per_day: Option<u64>,
    quota_message_bytes: Option<u64>,
    quota_stored_bytes: Option<u64>,
    presence_heartbeat_s: Option<u64>,
    presence_timeout_s: Option<u64>,
}

/// The settings as text, before paths are expanded and values validated.
struct Raw {
    nats_url: String,
    database_url: String,
    stream_prefix: String,
    admin_token: Option<String>,
    home: String,
    url: String,
    listen: String,
    data_dir: String,
    sse_heartbeat_s: String,
    quota_messages_per_day: String,
    quota_message_bytes: String,
    quota_stored_bytes: String,
    presence_heartbeat_s: String,
    presence_timeout_s: String,
}

impl Default for Raw {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/nexysync".into(),
            stream_prefix: "nexysync".into(),
            admin_token: None,
            home: "~/.nexysync".into(),
            url: "http://127.0.0.1:8707".into(),
            listen: "127.0.0.1:8707".into(),
            data_dir: "~/.local/share/nexysync".into(),
            sse_heartbeat_s: "30".into(),
            quota_messages_per_day: QuotaLimits::default().messages_per_day.to_string(),
            quota_message_bytes: QuotaLimits::default().message_bytes.to_string(),
            quota_stored_bytes: QuotaLimits::default().stored_bytes.to_string(),
            presence_heartbeat_s: "10".into(),
            presence_timeout_s: "30".into(),
        }
    }
}

impl Raw {
    fn apply_file(&mut self, file: FileLayer) {
        let FileLayer {
            nats_url,
            database_url,
            stream_prefix,
            admin_token,
            home,
            url,
            listen,
            data_dir,
            sse_heartbeat_s,
            quota_messages_per_day,
            quota_message_bytes,
            quota_stored_bytes,
            presence_heartbeat_s,
            presence_timeout_s,
        } = file;
        overwrite(&mut self.nats_url, nats_url);
        overwrite(&mut self.database_url, database_url);
        overwrite(&mut self.stream_prefix, stream_prefix);
        if admin_token.is_some() {
            self.admin_token = admin_token;
        }
        overwrite(&mut self.home, home);
        overwrite(&mut self.url, url);
        overwrite(&mut self.listen, listen);
        overwrite(&mut self.data_dir, data_dir);
        overwrite(
            &mut self.sse_heartbeat_s,
            sse_heartbeat_s.map(|s| s.to_string()),
        );
        for (slot, value) in [
            (&mut self.quota_messages_per_day, quota_messages_per_day),
            (&mut self.quota_message_bytes, quota_message_bytes),
            (&mut self.quota_stored_bytes, quota_stored_bytes),
            (&mut self.presence_heartbeat_s, presence_heartbeat_s),
            (&mut self.presence_timeout_s, presence_timeout_s),
        ] {
            overwrite(slot, value.map(|v| v.to_string()));
        }
    }

    fn apply_env(&mut self, env: &dyn Environment) {
        overwrite(&mut self.nats_url, env.var("NEXYSYNC_NATS_URL"));
        overwrite(&mut self.database_url, env.var("DATABASE_URL"));
        overwrite(&mut self.stream_prefix, env.var("NEXYSYNC_STREAM_PREFIX"));
        if let Some(token) = env.var("NEXYSYNC_ADMIN_TOKEN") {
            self.admin_token = Some(token);
        }
        overwrite(&mut self.home, env.var("NEXYSYNC_HOME"));
        overwrite(&mut self.url, env.var("NEXYSYNC_URL"));
        overwrite(&mut self.listen, env.var("NEXYSYNC_LISTEN"));
        overwrite(&mut self.data_dir, env.var("NEXYSYNC_DATA_DIR"));
        overwrite(
            &mut self.sse_heartbeat_s,
            env.var("NEXYSYNC_SSE_HEARTBEAT_S"),
        );
        for (slot, name) in [
            (
                &mut self.quota_messages_per_day,
                "NEXYSYNC_QUOTA_MESSAGES_PER_DAY",
            ),
            (
                &mut self.quota_message_bytes,
                "NEXYSYNC_QUOTA_MESSAGE_BYTES",
            ),
            (&mut self.quota_stored_bytes, "NEXYSYNC_QUOTA_STORED_BYTES"),
            (
                &mut self.presence_heartbeat_s,
                "NEXYSYNC_PRESENCE_HEARTBEAT_S",
            ),
            (&mut self.presence_timeout_s, "NEXYSYNC_PRESENCE_TIMEOUT_S"),
        ] {
            overwrite(slot, env.var(name));
        }
    }
}

fn overwrite(slot: &mut String, value: Option<String>) {
    if let Some(value) = value {
        *slot = value;
    }
}

impl Settings {
    /// Resolves the settings from the process environment and the optional file.
    pub fn from_environment(config_file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load(config_file, &ProcessEnvironment)
    }

    /// Resolves the settings: defaults, then the file (`config_file`, which must exist, or
    /// else `<home>/config.toml` if it exists), then the environment.
    pub fn load(config_file: Option<&Path>, env: &dyn Environment) -> anyhow::Result<Self> {
        let user_home = env.var("HOME");
        let mut raw = Raw::default();

        let file = match config_file {
            Some(path) => Some(path.to_path_buf()),
            None => {
                // The default file lives in the home the environment names (the file itself
                // cannot move the place it is looked up in).
                let home = env.var("NEXYSYNC_HOME").unwrap_or_else(|| raw.home.clone());
                expand_home(&home, user_home.as_deref())
                    .ok()
                    .map(|home| home.join("config.toml"))
                    .filter(|path| path.is_file())
            }
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read the settings file {}", path.display()))?;
            let layer: FileLayer = toml::from_str(&text)
                .with_context(|| format!("failed to parse the settings file {}", path.display()))?;
            raw.apply_file(layer);
        }
        raw.apply_env(env);

        let listen = raw.listen.parse::<SocketAddr>().with_context(|| {
            format!(
                "listen address `{}` is not an IP:PORT address (e.g. 127.0.0.1:8707; port 0 picks a free port)",
                raw.listen
            )
        })?;
        let url = validate_server_url(&raw.url)?;
        let sse_heartbeat = raw
            .sse_heartbeat_s
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=3600).contains(s))
            .map(std::time::Duration::from_secs)
            .with_context(|| {
                format!(
                    "NEXYSYNC_SSE_HEARTBEAT_S `{}` must be a whole number of seconds from 1 to 3600",
                    raw.sse_heartbeat_s
                )
            })?;
        let quota = QuotaLimits {
            messages_per_day: positive(
                &raw.quota_messages_per_day,
                "NEXYSYNC_QUOTA_MESSAGES_PER_DAY",
            )?,
            message_bytes: positive(&raw.quota_message_bytes, "NEXYSYNC_QUOTA_MESSAGE_BYTES")?,
            stored_bytes: positive(&raw.quota_stored_bytes, "NEXYSYNC_QUOTA_STORED_BYTES")?,
        };
        let seconds =
            |text: &str, name: &str| positive(text, name).map(std::time::Duration::from_secs);
        let presence_heartbeat =
            seconds(&raw.presence_heartbeat_s, "NEXYSYNC_PRESENCE_HEARTBEAT_S")?;
        let presence_timeout = seconds(&raw.presence_timeout_s, "NEXYSYNC_PRESENCE_TIMEOUT_S")?;
        if presence_timeout <= presence_heartbeat || presence_timeout.as_secs() >= 300 {
            bail!(
                "NEXYSYNC_PRESENCE_TIMEOUT_S ({}) must be longer than NEXYSYNC_PRESENCE_HEARTBEAT_S ({}) and under 300 (the presence stream's retention); a few heartbeats is right",
                presence_timeout.as_secs(),
                presence_heartbeat.as_secs()
            );
        }
        // The log crate owns the rule (the prefix names a JetStream stream and subjects).
        nexysync_log::Prefix::parse(&raw.stream_prefix)
            .context("invalid NEXYSYNC_STREAM_PREFIX (or stream_prefix in the settings file)")?;
        Ok(Self {
            nats_url: raw.nats_url,
            database_url: Secret::new(raw.database_url),
            stream_prefix: raw.stream_prefix,
            admin_token: raw.admin_token.map(Secret::new),
            home: expand_home(&raw.home, user_home.as_deref())?,
            url,
            listen,
            data_dir: expand_home(&raw.data_dir, user_home.as_deref())?,
            sse_heartbeat,
            quota,
            presence_heartbeat,
            presence_timeout,
        })
    }

    /// The database URL with any password replaced, for messages.
    pub fn database_url_for_display(&self) -> String {
        redact_password(self.database_url.expose())
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("nats_url", &self.nats_url)
            .field("database_url", &self.database_url_for_display())
            .field("stream_prefix", &self.stream_prefix)
            .field("admin_token", &self.admin_token)
            .field("home", &self.home)
            .field("url", &self.url)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("sse_heartbeat", &self.sse_heartbeat)
            .field("quota", &self.quota)
            .field("presence_heartbeat", &self.presence_heartbeat)
            .field("presence_timeout", &self.presence_timeout)
            .finish()
    }
}

/// A whole number above zero, or an error naming the setting.
fn positive(text: &str, name: &str) -> anyhow::Result<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{name} `{text}` must be a whole number above 0"))
}

/// Checks that `url` is an http(s) URL and drops a trailing slash, so paths can be
/// appended with `format!("{url}/v1/…")`.
pub fn validate_server_url(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| {
        format!("server URL `{url}` is not a URL (expected e.g. http://127.0.0.1:8707)")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("server URL `{url}` must start with http:// or https://");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Replaces `~` or a leading `~/` with the user's home directory.
fn expand_home(path: &str, user_home: Option<&str>) -> anyhow::Result<PathBuf> {
    let rest = match path.strip_prefix('~') {
        None => return Ok(PathBuf::from(path)),
        Some("") => "",
        Some(rest) => match rest.strip_prefix('/') {
            Some(rest) => rest,
            // `~user/…` is not expanded; take it literally.
            None => return Ok(PathBuf::from(path)),
        },
    };
    let Some(home) = user_home else {
        bail!(
            "cannot expand `{path}`: HOME is not set (set HOME, or NEXYSYNC_HOME and NEXYSYNC_DATA_DIR to absolute paths)"
        );
    };
    Ok(Path::new(home).join(rest))
}

fn redact_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable database URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct FakeEnvironment(HashMap<String, String>);

    impl FakeEnvironment {
        fn with(vars: &[(&str, &str)]) -> Self {
            Self(
                vars.iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
            )
        }
    }

    impl Environment for FakeEnvironment {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned().filter(|value| !value.is_empty())
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let env = FakeEnvironment::with(&[("HOME", "/home/ada")]);
        let settings = Settings::load(None, &env).unwrap();
        assert_eq!(settings.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(
            settings.database_url.expose(),
            "postgres://postgres@127.0.0.1:5432/nexysync"
        );
        assert_eq!(settings.stream_prefix, "nexysync");
        assert!(settings.admin_token.is_none());
        assert_eq!(settings.home, PathBuf::from("/home/ada/.nexysync"));
        assert_eq!(settings.url, "http://127.0.0.1:8707");
        assert_eq!(settings.listen, "127.0.0.1:8707".parse().unwrap());
        assert_eq!(
            settings.data_dir,
            PathBuf::from("/home/ada/.local/share/nexysync")
        );
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nexysync.toml");
        std::fs::write(
            &file,
            r#"
                nats_url = "nats://file:4222"
                stream_prefix = "from_file"
                url = "http://file:9000/"
                data_dir = "/srv/nexysync"
            "#,
        )
        .unwrap();
        let env = FakeEnvironment::with(&[
            ("HOME", "/home/ada"),
            ("NEXYSYNC_STREAM_PREFIX", "from_env"),
            ("NEXYSYNC_ADMIN_TOKEN", "nsadm_env"),
            ("NEXYSYNC_HOME", "/etc/ns-home"),
        ]);
        let settings = Settings::load(Some(&file), &env).unwrap();
        assert_eq!(settings.nats_url, "nats://file:4222", "file beats default");
        assert_eq!(settings.stream_prefix, "from_env", "env beats file");
        assert_eq!(settings.url, "http://file:9000", "trailing slash dropped");
        assert_eq!(settings.data_dir, PathBuf::from("/srv/nexysync"));
        assert_eq!(settings.home, PathBuf::from("/etc/ns-home"));
        assert_eq!(
            settings.admin_token.as_ref().map(Secret::expose),
            Some("nsadm_env")
        );
        assert_eq!(settings.listen, "127.0.0.1:8707".parse().unwrap());
    }

    #[test]
    fn the_default_file_is_read_from_the_home_when_it_exists() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("config.toml"),
            "listen = \"0.0.0.0:9999\"\n",
        )
        .unwrap();
        let home_text = home.path().display().to_string();
        let env = FakeEnvironment::with(&[("HOME", "/home/ada"), ("NEXYSYNC_HOME", &home_text)]);
        let settings = Settings::load(None, &env).unwrap();
        assert_eq!(settings.listen, "0.0.0.0:9999".parse().unwrap());
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let env = FakeEnvironment::with(&[("HOME", "/home/ada"), ("NEXYSYNC_ADMIN_TOKEN", "")]);
        assert!(Settings::load(None, &env).unwrap().admin_token.is_none());
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_naming_it() {
        let env = FakeEnvironment::with(&[("HOME", "/home/ada")]);
        let err = Settings::load(Some(Path::new("/nonexistent/ns.toml")), &env).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/ns.toml"));
    }

    #[test]
    fn a_misspelt_key_in_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ns.toml");
        std::fs::write(&file, "nats_ulr = \"nats://x\"\n").unwrap();
        let env = FakeEnvironment::with(&[("HOME", "/home/ada")]);
        let err = Settings::load(Some(&file), &env).unwrap_err();
        assert!(format!("{err:#}").contains("nats_ulr"), "{err:#}");
    }

    #[test]
    fn invalid_values_are_refused_with_the_rule() {
        let env = FakeEnvironment::with(&[("HOME", "/h"), ("NEXYSYNC_LISTEN", "localhost")]);
        let err = Settings::load(None, &env).unwrap_err();
        assert!(format!("{err:#}").contains("IP:PORT"));
        let env = FakeEnvironment::with(&[("HOME", "/h"), ("NEXYSYNC_URL", "ftp://x")]);
        assert!(Settings::load(None, &env).is_err());
        let env = FakeEnvironment::with(&[("HOME", "/h"), ("NEXYSYNC_STREAM_PREFIX", "a.b")]);
        assert!(Settings::load(None, &env).is_err());
    }

    #[test]
    fn quotas_and_presence_come_from_the_environment_and_are_checked() {
        let env = FakeEnvironment::with(&[
            ("HOME", "/h"),
            ("NEXYSYNC_QUOTA_MESSAGES_PER_DAY", "5"),
            ("NEXYSYNC_QUOTA_STORED_BYTES", "1000"),
            ("NEXYSYNC_PRESENCE_HEARTBEAT_S", "2"),
            ("NEXYSYNC_PRESENCE_TIMEOUT_S", "6"),
        ]);
        let settings = Settings::load(None, &env).unwrap();
        assert_eq!(settings.quota.messages_per_day, 5);
        assert_eq!(settings.quota.stored_bytes, 1000);
        assert_eq!(
            settings.quota.message_bytes,
            QuotaLimits::default().message_bytes
        );
        assert_eq!(settings.presence_timeout.as_secs(), 6);
        let env = FakeEnvironment::with(&[("HOME", "/h"), ("NEXYSYNC_QUOTA_MESSAGE_BYTES", "0")]);
        let err = Settings::load(None, &env).unwrap_err();
        assert!(format!("{err:#}").contains("NEXYSYNC_QUOTA_MESSAGE_BYTES"));
        let env = FakeEnvironment::with(&[("HOME", "/h"), ("NEXYSYNC_PRESENCE_TIMEOUT_S", "5")]);
        assert!(
            Settings::load(None, &env).is_err(),
            "timeout must exceed heartbeat x1"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let env = FakeEnvironment::with(&[
            ("HOME", "/h"),
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/ns"),
            ("NEXYSYNC_ADMIN_TOKEN", "nsadm_topsecret"),
        ]);
        let settings = Settings::load(None, &env).unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(settings.database_url_for_display().contains("app:***@db"));
    }

    #[test]
    fn without_home_a_tilde_path_cannot_be_resolved() {
        let env = FakeEnvironment::with(&[]);
        assert!(Settings::load(None, &env).is_err());
        let env = FakeEnvironment::with(&[
            ("NEXYSYNC_HOME", "/srv/ns-home"),
            ("NEXYSYNC_DATA_DIR", "/srv/ns-data"),
        ]);
        assert!(Settings::load(None, &env).is_ok());
    }
}
