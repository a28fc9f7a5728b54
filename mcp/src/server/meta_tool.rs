//! `ns_meta`: who am I, who else is here (role, description, online, last seen), who is
//! online, how much of the project's quota is used; and setting my own role. Roles and
//! descriptions are encrypted; every profile shown was verified (signed by the agent it
//! describes, registered by the project owner).

use nexysync_domain::quota::utc_rfc3339;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::answer::{Answer, ToolError};
use super::session::Session;
use super::NexySyncMcp;

/// Longest role accepted, in characters (a role is a label, not an essay).
const MAX_ROLE_CHARS: usize = 200;
/// Longest description accepted, in characters.
const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Parameters of `ns_meta`. Which fields apply depends on `action`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MetaParams {
    /// `whoami`: your agent, project and role. `agents`: every agent of the project with
    /// role, description, online and last seen. `presence`: who is online now. `quota`:
    /// the project's limits and usage. `update_role`: set your own role (needs `role`,
    /// optional `description`).
    pub action: MetaAction,
    /// update_role: your role, e.g. `reviewer` or `backend`.
    #[serde(default)]
    pub role: Option<String>,
    /// update_role: what you do, for the other agents.
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
// Inlined: some MCP clients do not follow `$ref`s in tool schemas.
#[schemars(inline)]
pub enum MetaAction {
    Whoami,
    Agents,
    Presence,
    Quota,
    UpdateRole,
}

pub(crate) async fn run(server: &NexySyncMcp, params: MetaParams) -> Result<Answer, ToolError> {
    let session = server.session().await?;
    match params.action {
        MetaAction::Whoami => whoami(&session).await,
        MetaAction::Agents => agents(&session).await,
        MetaAction::Presence => presence(&session).await,
        MetaAction::Quota => quota(&session).await,
        MetaAction::UpdateRole => update_role(&session, params).await,
    }
}

async fn whoami(session: &Session) -> Result<Answer, ToolError> {
    let me = session.client.me().await?;
    let role = me
        .profile
        .as_ref()
        .map(|p| format!(", role {}", p.role))
        .unwrap_or_else(|| ", no role set (ns_meta update_role)".into());
    Ok(Answer::new(
        format!(
            "you are {} in project {}{role}",
            me.agent_name, me.project_name
        ),
        me,
    ))
}

async fn agents(session: &Session) -> Result<Answer, ToolError> {
    let agents = session.client.agents_meta().await?;
    let online = agents.iter().filter(|a| a.online).count();
    let names = agents
        .iter()
        .map(|a| {
            let mut line = a.name.to_string();
            if let Some(role) = &a.role {
                line.push_str(&format!(" ({role})"));
            }
            if a.online {
                line.push_str(" online");
            }
            line
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Answer::new(
        format!("{} agents, {online} online: {names}", agents.len()),
        json!({ "agents": agents }),
    ))
}

async fn presence(session: &Session) -> Result<Answer, ToolError> {
    let list = session.client.presence().await?;
    let online: Vec<String> = list
        .agents
        .iter()
        .filter(|a| a.online)
        .map(|a| a.name.to_string())
        .collect();
    let agents: Vec<_> = list
        .agents
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "online": a.online,
                "last_seen": a.last_seen_ms.map(|ms| utc_rfc3339(ms.max(0) as u64)),
            })
        })
        .collect();
    let summary = match online.len() {
        0 => "nobody is online".to_owned(),
        _ => format!("online: {}", online.join(", ")),
    };
    Ok(Answer::new(
        summary,
        json!({ "agents": agents, "bound_ms": list.bound_ms }),
    ))
}

async fn quota(session: &Session) -> Result<Answer, ToolError> {
    let status = session.client.quota().await?;
    let (limits, usage) = (status.limits, status.usage);
    Ok(Answer::new(
        format!(
            "messages today {}/{} (resets {}), stored {}/{} bytes, largest message {} bytes",
            usage.messages_today,
            limits.messages_per_day,
            utc_rfc3339(status.messages_reset_at_ms),
            usage.stored_bytes,
            limits.stored_bytes,
            limits.message_bytes
        ),
        json!({
            "limits": limits,
            "usage": usage,
            "messages_reset_at": utc_rfc3339(status.messages_reset_at_ms),
        }),
    ))
}

async fn update_role(session: &Session, params: MetaParams) -> Result<Answer, ToolError> {
    let role = params
        .role
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ToolError::invalid("`role` is required for `update_role` (e.g. `reviewer`)")
        })?;
    if role.chars().count() > MAX_ROLE_CHARS {
        return Err(ToolError::invalid(format!(
            "`role` is at most {MAX_ROLE_CHARS} characters; put details in `description`"
        )));
    }
    let description = params
        .description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(ToolError::invalid(format!(
            "`description` is at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    let appended = session
        .client
        .update_profile(&role, description.as_deref())
        .await?;
    Ok(Answer::new(
        format!("your role is now {role}"),
        json!({
            "role": role,
            "description": description,
            "seq": appended.seq,
            "duplicate": appended.duplicate,
        }),
    ))
}
