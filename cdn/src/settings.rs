//! The CDN's settings. Filled by the binary (or by `nexysync up`); this library never
//! reads the environment itself.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use nexysync_domain::blob_url::UrlSecret;

/// Where blobs live.
#[derive(Clone)]
pub enum Storage {
    /// A directory on local disk (the default).
    Disk { dir: PathBuf },
    /// An S3-compatible bucket, through `object_store`.
    S3 {
        bucket: String,
        region: String,
        /// For S3-compatible services other than AWS (MinIO, Ceph, R2…).
        endpoint: Option<String>,
        access_key_id: String,
        secret_access_key: String,
        /// Plain `http://` endpoints (a local MinIO); never for anything remote.
        allow_http: bool,
    },
    /// Process memory: for tests of the object-storage path only.
    Memory,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disk { dir } => f.debug_struct("Disk").field("dir", dir).finish(),
            Self::S3 {
                bucket,
                region,
                endpoint,
                ..
            } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("region", region)
                .field("endpoint", endpoint)
                .field("credentials", &"<hidden>")
                .finish(),
            Self::Memory => f.write_str("Memory"),
        }
    }
}

/// Everything the CDN needs to run. Its `Debug` hides the secret and credentials.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (see [`crate::Cdn::local_addr`]).
    pub listen: SocketAddr,
    pub storage: Storage,
    /// Shared with the API, which signs the URLs this service checks.
    pub url_secret: UrlSecret,
    /// Bytes buffered per upload part (object storage wants at least 5 MiB); an upload
    /// holds at most a few parts in memory, whatever the file size.
    pub part_size: usize,
}

impl Settings {
    /// Defaults: `127.0.0.1:8708`, 5 MiB parts.
    pub fn new(storage: Storage, url_secret: UrlSecret) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8708)),
            storage,
            url_secret,
            part_size: 5 * 1024 * 1024,
        }
    }
}

/// The file name of the generated URL-signing secret inside a data directory.
pub const SECRET_FILE: &str = "url-secret";

/// The URL-signing secret kept in `path`, generating the file (mode 0600) on first use.
/// `nexysync up` and `nexysync-cdn` on one machine thereby share one secret.
pub fn url_secret_in_file(path: &std::path::Path) -> anyhow::Result<UrlSecret> {
    use anyhow::Context;
    match std::fs::read_to_string(path) {
        Ok(text) => UrlSecret::from_hex(&text).with_context(|| {
            format!(
                "{} does not hold a URL secret (64 hex digits)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("failed to create {}", dir.display()))?;
            }
            let secret = UrlSecret::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("failed to create {}", path.display()))?;
            std::io::Write::write_all(&mut file, secret.to_hex().as_bytes())
                .with_context(|| format!("failed to write {}", path.display()))?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

impl Settings {
    /// Settings from `NEXYSYNC_*` variables looked up with `var` (the binary passes the
    /// process environment): `NEXYSYNC_CDN_LISTEN` (`127.0.0.1:8708`), `NEXYSYNC_URL_SECRET`
    /// (else `<data dir>/url-secret`), `NEXYSYNC_DATA_DIR` (`~/.local/share/nexysync`),
    /// `NEXYSYNC_BLOB_DIR` (`<data dir>/blobs`), and for S3 `NEXYSYNC_S3_BUCKET`,
    /// `NEXYSYNC_S3_REGION`, `NEXYSYNC_S3_ENDPOINT`, `NEXYSYNC_S3_ACCESS_KEY_ID`,
    /// `NEXYSYNC_S3_SECRET_ACCESS_KEY`, `NEXYSYNC_S3_ALLOW_HTTP`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        use anyhow::Context;
        let data_dir = match var("NEXYSYNC_DATA_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = var("HOME").context("HOME is not set; set NEXYSYNC_DATA_DIR")?;
                PathBuf::from(home).join(".local/share/nexysync")
            }
        };
        let url_secret = match var("NEXYSYNC_URL_SECRET") {
            Some(hex) => {
                UrlSecret::from_hex(&hex).context("NEXYSYNC_URL_SECRET must be 64 hex digits")?
            }
            None => url_secret_in_file(&data_dir.join(SECRET_FILE))?,
        };
        let storage = match var("NEXYSYNC_S3_BUCKET") {
            Some(bucket) => Storage::S3 {
                bucket,
                region: var("NEXYSYNC_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
                endpoint: var("NEXYSYNC_S3_ENDPOINT"),
                access_key_id: var("NEXYSYNC_S3_ACCESS_KEY_ID").unwrap_or_default(),
                secret_access_key: var("NEXYSYNC_S3_SECRET_ACCESS_KEY").unwrap_or_default(),
                allow_http: var("NEXYSYNC_S3_ALLOW_HTTP").is_some_and(|v| v == "1" || v == "true"),
            },
            None => Storage::Disk {
                dir: var("NEXYSYNC_BLOB_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| data_dir.join("blobs")),
            },
        };
        let mut settings = Self::new(storage, url_secret);
        if let Some(listen) = var("NEXYSYNC_CDN_LISTEN") {
            settings.listen = listen
                .parse()
                .context("NEXYSYNC_CDN_LISTEN must be IP:PORT")?;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    // A test: a panic is the failure report.
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn by_default_blobs_go_to_the_data_dir_and_the_secret_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let first = Settings::from_vars(vars(&[("NEXYSYNC_DATA_DIR", &data)])).unwrap();
        assert!(
            matches!(&first.storage, Storage::Disk { dir: d } if *d == dir.path().join("blobs"))
        );
        let again = Settings::from_vars(vars(&[("NEXYSYNC_DATA_DIR", &data)])).unwrap();
        assert_eq!(first.url_secret, again.url_secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn s3_is_chosen_by_configuration_and_its_credentials_never_print() {
        let secret = UrlSecret::generate();
        let settings = Settings::from_vars(vars(&[
            ("NEXYSYNC_DATA_DIR", "/nonexistent"),
            ("NEXYSYNC_URL_SECRET", &secret.to_hex()),
            ("NEXYSYNC_S3_BUCKET", "blobs"),
            ("NEXYSYNC_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("NEXYSYNC_S3_ACCESS_KEY_ID", "AKIDCANARY"),
            ("NEXYSYNC_S3_SECRET_ACCESS_KEY", "s3-secret-canary"),
            ("NEXYSYNC_S3_ALLOW_HTTP", "true"),
            ("NEXYSYNC_CDN_LISTEN", "127.0.0.1:0"),
        ]))
        .unwrap();
        assert_eq!(settings.url_secret, secret);
        assert!(
            matches!(&settings.storage, Storage::S3 { bucket, allow_http: true, .. } if bucket == "blobs")
        );
        let shown = format!("{settings:?}");
        for hidden in ["AKIDCANARY", "s3-secret-canary", &secret.to_hex()] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        // The S3 client is built from these settings without contacting anything.
        crate::BlobStore::open(&settings.storage, settings.part_size).unwrap();
        assert!(Settings::from_vars(vars(&[
            ("NEXYSYNC_URL_SECRET", "xyz"),
            ("NEXYSYNC_DATA_DIR", "/x")
        ]))
        .is_err());
    }
}
