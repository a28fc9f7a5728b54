//! Identifiers and validated names. Every id is a newtype so an agent id can never be
//! passed where an event id is expected.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A value that failed validation, with the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{0}` is not a UUID")]
    NotAUuid(String),
    #[error(
        "event id `{0}` is not a UUIDv7 (event ids are time-ordered UUIDv7 chosen by the client)"
    )]
    NotVersion7(String),
    #[error("name `{0}` is invalid: use 1 to 64 characters from a-z, A-Z, 0-9, '.', '_' and '-', starting with a letter or digit")]
    InvalidName(String),
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "Uuid", into = "Uuid")]
        pub struct $name(Uuid);

        impl $name {
            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Parses the textual form.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let uuid = Uuid::parse_str(s).map_err(|_| IdError::NotAUuid(s.to_owned()))?;
                Self::try_from(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// A project: the unit of isolation, with one key and one log subject.
    ProjectId
);
uuid_id!(
    /// An agent registered in a project.
    AgentId
);
uuid_id!(
    /// An event, chosen by the client as a UUIDv7; it is also the `Nats-Msg-Id` that makes
    /// appends idempotent, and a message's id.
    EventId
);

impl ProjectId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID read back from storage.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl TryFrom<Uuid> for ProjectId {
    type Error = IdError;
    fn try_from(uuid: Uuid) -> Result<Self, IdError> {
        Ok(Self(uuid))
    }
}

impl AgentId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID read back from storage.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl TryFrom<Uuid> for AgentId {
    type Error = IdError;
    fn try_from(uuid: Uuid) -> Result<Self, IdError> {
        Ok(Self(uuid))
    }
}

impl EventId {
    /// A fresh UUIDv7.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// When the client made the event: the UUIDv7's Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        self.0
            .get_timestamp()
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                secs * 1000 + u64::from(nanos) / 1_000_000
            })
            .unwrap_or(0)
    }
}

impl TryFrom<Uuid> for EventId {
    type Error = IdError;
    fn try_from(uuid: Uuid) -> Result<Self, IdError> {
        if uuid.get_version_num() == 7 {
            Ok(Self(uuid))
        } else {
            Err(IdError::NotVersion7(uuid.to_string()))
        }
    }
}

/// A position in the event stream (JetStream's stream sequence, starting at 1).
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default, JsonSchema,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates a name: 1 to 64 characters of `[A-Za-z0-9._-]`, starting alphanumeric.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let valid_start = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
                let valid_chars = s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if valid_start && valid_chars && s.len() <= 64 {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError::InvalidName(s.to_owned()))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

name_type!(
    /// A project's human name (clear metadata: operators see it, agents never send it).
    ProjectName
);
name_type!(
    /// An agent's name, unique within its project; messages are addressed by it.
    AgentName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_must_be_version_7() {
        let v4 = Uuid::new_v4().to_string();
        assert_eq!(EventId::parse(&v4), Err(IdError::NotVersion7(v4.clone())));
        assert!(EventId::parse(&EventId::generate().to_string()).is_ok());
    }

    #[test]
    fn names_reject_paths_spaces_and_empties() {
        for bad in ["", "../etc", "a b", "-lead", &"x".repeat(65)] {
            assert!(AgentName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(AgentName::parse("claude-code.1_a").is_ok());
    }

    #[test]
    fn ids_round_trip_through_json() {
        let id = EventId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
        let v4 = format!("\"{}\"", Uuid::new_v4());
        assert!(serde_json::from_str::<EventId>(&v4).is_err());
    }
}
