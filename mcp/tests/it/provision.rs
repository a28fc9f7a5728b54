//! The real API for these tests, started in process by `nexysync-tests` against this
//! machine's nats-server and PostgreSQL (each test its own stream prefix and database),
//! a project on it, and key files for its agents, as `nexysync agent add` writes them.

use std::net::SocketAddr;
use std::time::Duration;

use nexysync_domain::ids::{ProjectName, Seq};
use nexysync_mcp::key_file::{AgentEntry, KeyFile, ProjectEntry, KEY_FILE_VERSION};
use nexysync_tests::{eventually, TestAgent, TestApi, TestEnv, TestProject};

/// How long a test waits for something it expects to happen.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A project provisioned on a test API, with the name its key files carry.
pub struct Project {
    pub test: TestProject,
    pub name: ProjectName,
}

/// A fresh environment, an API in this process, and a project named `demo` on it.
/// The test ends with `api.stop().await; env.cleanup().await`.
pub async fn start() -> (TestEnv, TestApi, Project) {
    let env = TestEnv::new();
    let api = env.spawn_api().await;
    let project = Project::create(&api, "demo").await;
    (env, api, project)
}

impl Project {
    pub async fn create(api: &TestApi, name: &str) -> Project {
        Project {
            test: TestProject::create(api, name).await,
            name: ProjectName::parse(name).unwrap(),
        }
    }

    /// Registers an agent (signed by the owner key) and returns its key file once the
    /// server lists the agent, so other agents can address it by name at once.
    pub async fn agent(&self, api: &TestApi, name: &str) -> KeyFile {
        let agent = self.test.add_agent(api, name).await;
        let new = &agent;
        eventually(
            "the server to list the new agent",
            DEADLINE,
            || async move {
                let (status, list) = new.get(api, "/v1/agents").await;
                let listed = status == 200
                    && list["agents"]
                        .as_array()
                        .is_some_and(|agents| agents.iter().any(|a| a["name"] == name));
                listed.then_some(())
            },
        )
        .await;
        key_file(api, &self.test, &self.name, &agent)
    }
}

/// The key file of `agent`: what `nexysync agent add` would write for it.
pub fn key_file(
    api: &TestApi,
    project: &TestProject,
    project_name: &ProjectName,
    agent: &TestAgent,
) -> KeyFile {
    KeyFile {
        version: KEY_FILE_VERSION,
        server: api.url.clone(),
        project: ProjectEntry {
            id: project.id,
            name: project_name.clone(),
            owner_key: project.owner.public_key(),
        },
        agent: AgentEntry {
            id: agent.id,
            name: agent.name.clone(),
        },
        token: agent.token.clone(),
        project_key: project.key.clone(),
        signing_key: agent.key.clone(),
    }
}

/// Stops `api` and starts another instance on the same address, database and stream:
/// what clients see when the server restarts.
pub async fn restart(env: &TestEnv, api: TestApi) -> TestApi {
    let addr: SocketAddr = api
        .url
        .strip_prefix("http://")
        .and_then(|addr| addr.parse().ok())
        .unwrap();
    api.stop().await;
    let mut settings = env.settings();
    settings.listen = addr;
    let api = env.spawn_api_with(settings).await;
    assert_eq!(api.url, format!("http://{addr}"));
    api
}

/// An address where nothing listens.
pub fn closed_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Everything this environment stores, as text: every payload of the log and every row
/// of every table of the read models (byte columns as hex).
pub async fn everything_stored(env: &TestEnv) -> String {
    use futures::StreamExt;

    let mut dump = String::new();
    let log = env.log().await;
    let last = log.last_seq().await.unwrap();
    let mut events = log.read_all(Seq(0)).await.unwrap();
    while let Some(event) = tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("the log is read to its end")
    {
        let event = event.unwrap();
        dump.push_str(&String::from_utf8_lossy(&event.payload));
        dump.push('\n');
        if event.seq.0 >= last {
            break;
        }
    }

    let pool = env.pool().await;
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!tables.is_empty(), "the read models have tables");
    for (schema, table) in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!(r#"SELECT t::text FROM "{schema}"."{table}" t"#))
                .fetch_all(&pool)
                .await
                .unwrap();
        for row in rows {
            dump.push_str(&row);
            dump.push('\n');
        }
    }
    pool.close().await;
    dump
}
