//! Stream and subject names under a prefix, so tenants and tests never collide.

use nexysync_domain::ids::ProjectId;

/// A validated prefix: 1 to 32 characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream prefix `{0}` is invalid: use 1 to 32 characters from a-z, 0-9, '_' and '-'")]
pub struct PrefixError(String);

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, PrefixError> {
        let valid = !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(PrefixError(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>_events`: the audited event stream.
    pub fn stream_name(&self) -> String {
        format!("{}_events", self.0)
    }

    /// `<prefix>.events.<project>`: one project's history.
    pub fn project_subject(&self, project: ProjectId) -> String {
        format!("{}.events.{}", self.0, project)
    }

    /// `<prefix>.events.>`: every project.
    pub fn all_events_subject(&self) -> String {
        format!("{}.events.>", self.0)
    }

    /// `<prefix>_presence`: the ephemeral presence stream.
    pub fn presence_stream_name(&self) -> String {
        format!("{}_presence", self.0)
    }

    /// `<prefix>.presence.<instance>`: one API instance's presence events.
    pub fn presence_subject(&self, instance: &str) -> String {
        format!("{}.presence.{}", self.0, instance)
    }

    /// `<prefix>.presence.>`: every instance.
    pub fn all_presence_subject(&self) -> String {
        format!("{}.presence.>", self.0)
    }

    /// The project a subject of this prefix belongs to.
    pub fn project_of(&self, subject: &str) -> Option<ProjectId> {
        let rest = subject
            .strip_prefix(self.0.as_str())?
            .strip_prefix(".events.")?;
        ProjectId::parse(rest).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_to_their_project() {
        let prefix = Prefix::parse("t_1").unwrap();
        let project = ProjectId::generate();
        let subject = prefix.project_subject(project);
        assert_eq!(prefix.project_of(&subject), Some(project));
        assert_eq!(Prefix::parse("other").unwrap().project_of(&subject), None);
    }

    #[test]
    fn prefixes_with_dots_or_wildcards_are_refused() {
        for bad in ["", "a.b", "a*", "A", "a>"] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }
}
