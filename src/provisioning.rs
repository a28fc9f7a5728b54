//! The provisioning client: posts owner-signed events to the API with the admin token,
//! and turns every failure into a message a person can act on.

use std::time::Duration;

use nexysync_api::Secret;
use nexysync_domain::event::Envelope;
use nexysync_domain::ids::ProjectId;
use nexysync_domain::wire::{Appended, ErrorBody};
use reqwest::StatusCode;

/// Why a provisioning request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error(
        "the NexySync server at {url} is not reachable ({reason}); start it with `make up` \
         (or `nexysync up`), or point at a running one with --server URL or NEXYSYNC_URL"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "the server at {url} refused the admin token ({message}); use the server's token: \
             NEXYSYNC_ADMIN_TOKEN as it was set for `nexysync up`, or its <data-dir>/admin-token \
             file, passed with --admin-token-file FILE"
    )]
    Unauthorized { url: String, message: String },
    #[error("the server refused the request: {message} ({code}, HTTP {status})")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("the server at {url} answered HTTP {status} with an unexpected body: {body}")]
    Unexpected {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("the request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
}

impl ProvisioningError {
    /// The API's error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            Self::Unauthorized { .. } => Some("unauthorized"),
            _ => None,
        }
    }
}

/// A client for the admin routes of one server.
#[derive(Debug, Clone)]
pub struct Provisioning {
    http: reqwest::Client,
    server: String,
    admin_token: Secret,
}

impl Provisioning {
    /// `server` is the base URL without a trailing slash (see
    /// [`crate::settings::validate_server_url`]).
    pub fn new(server: String, admin_token: Secret) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("nexysync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| anyhow::anyhow!("failed to build the HTTP client: {err}"))?;
        Ok(Self {
            http,
            server,
            admin_token,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// `POST /v1/projects` with a signed `ProjectCreated`.
    pub async fn create_project(&self, event: &Envelope) -> Result<Appended, ProvisioningError> {
        self.post("/v1/projects", event).await
    }

    /// `POST /v1/projects/{id}/agents` with an owner-signed `AgentRegistered`.
    pub async fn register_agent(
        &self,
        project: ProjectId,
        event: &Envelope,
    ) -> Result<Appended, ProvisioningError> {
        self.post(&format!("/v1/projects/{project}/agents"), event)
            .await
    }

    /// `POST /v1/projects/{id}/retention` with an owner-signed `RetentionSet`.
    pub async fn set_retention(
        &self,
        project: ProjectId,
        event: &Envelope,
    ) -> Result<Appended, ProvisioningError> {
        self.post(&format!("/v1/projects/{project}/retention"), event)
            .await
    }

    async fn post(&self, path: &str, event: &Envelope) -> Result<Appended, ProvisioningError> {
        let url = format!("{}{path}", self.server);
        let response = self
            .http
            .post(&url)
            .bearer_auth(self.admin_token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(event.to_json())
            .send()
            .await
            .map_err(|err| self.transport_error(&url, &err))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| self.transport_error(&url, &err))?;
        if status.is_success() {
            return serde_json::from_slice::<Appended>(&body).map_err(|_| {
                ProvisioningError::Unexpected {
                    url: url.clone(),
                    status,
                    body: excerpt(&body),
                }
            });
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) if status == StatusCode::UNAUTHORIZED => {
                Err(ProvisioningError::Unauthorized {
                    url: self.server.clone(),
                    message: error.message,
                })
            }
            Ok(ErrorBody { error }) => Err(ProvisioningError::Refused {
                status,
                code: error.code,
                message: error.message,
            }),
            Err(_) => Err(ProvisioningError::Unexpected {
                url,
                status,
                body: excerpt(&body),
            }),
        }
    }

    fn transport_error(&self, url: &str, err: &reqwest::Error) -> ProvisioningError {
        if err.is_connect() {
            return ProvisioningError::Unreachable {
                url: self.server.clone(),
                reason: root_cause(err),
            };
        }
        let reason = error_chain(err);
        if err.is_timeout() {
            ProvisioningError::Transport {
                url: url.to_owned(),
                reason: format!(
                    "no answer in time ({reason}); the server may be overloaded or stuck"
                ),
            }
        } else {
            ProvisioningError::Transport {
                url: url.to_owned(),
                reason,
            }
        }
    }
}

/// The innermost cause ("Connection refused (os error 111)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// reqwest's top-level message is terse ("error sending request"); the cause says why.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn excerpt(body: &[u8]) -> String {
    const LIMIT: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty)".into()
    } else if text.chars().count() > LIMIT {
        format!("{}…", text.chars().take(LIMIT).collect::<String>())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use nexysync_domain::crypto::SigningKey;
    use nexysync_domain::event::{Actor, Draft, EventBody, ProjectCreated};
    use nexysync_domain::ids::ProjectName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn project_created() -> Envelope {
        let owner = SigningKey::generate();
        Draft::new(
            ProjectId::generate(),
            Actor::Owner,
            EventBody::ProjectCreated(ProjectCreated {
                name: ProjectName::parse("demo").unwrap(),
                owner_key: owner.public_key(),
                retention: Default::default(),
            }),
        )
        .sign(&owner)
    }

    /// A one-shot HTTP server that reads one request and answers it with `status` and `body`.
    async fn answering(status: &'static str, body: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the whole request (headers, then content-length bytes of body) so the
            // client never sees its upload cut off.
            loop {
                let n = socket.read(&mut chunk).await.unwrap();
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map(|value| value.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            let _ = socket.shutdown().await;
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_refused_connection_says_the_server_is_not_reachable_and_how_to_start_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let client = Provisioning::new(url.clone(), Secret::new("nsadm_x")).unwrap();
        let err = client.create_project(&project_created()).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ProvisioningError::Unreachable { .. }),
            "{text}"
        );
        assert!(text.contains(&url) && text.contains("make up"), "{text}");
    }

    #[tokio::test]
    async fn an_api_error_shows_its_code_and_message() {
        let url = answering(
            "409 Conflict",
            r#"{"error":{"code":"agent_name_taken","message":"an agent named `alice` already exists in this project"}}"#
                .into(),
        )
        .await;
        let client = Provisioning::new(url, Secret::new("nsadm_x")).unwrap();
        let err = client.create_project(&project_created()).await.unwrap_err();
        assert_eq!(err.code(), Some("agent_name_taken"));
        let text = err.to_string();
        assert!(
            text.contains("`alice` already exists") && text.contains("409"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_wrong_admin_token_says_where_the_right_one_is() {
        let url = answering(
            "401 Unauthorized",
            r#"{"error":{"code":"unauthorized","message":"bad admin token"}}"#.into(),
        )
        .await;
        let client = Provisioning::new(url, Secret::new("nsadm_x")).unwrap();
        let err = client.create_project(&project_created()).await.unwrap_err();
        assert!(err.to_string().contains("admin-token"), "{err}");
    }

    #[tokio::test]
    async fn a_success_returns_the_appended_sequence() {
        let event = project_created();
        let body = format!(r#"{{"id":"{}","seq":7,"duplicate":false}}"#, event.id);
        let url = answering("201 Created", body).await;
        let client = Provisioning::new(url, Secret::new("nsadm_x")).unwrap();
        let appended = client.create_project(&event).await.unwrap();
        assert_eq!(appended.id, event.id);
        assert_eq!(appended.seq.0, 7);
    }
}
