//! What a handler's signature says about its operation: the request body (`ApiJson<T>`),
//! the query parameters (`ApiQuery<T>`), the auth (`AgentAuth`, `AdminAuth`), whether it
//! reads the path, and its answer (`Json<T>`, a status and `Json<T>`, an event stream),
//! behind `Result<_, ApiError>` or not.
//!
//! The types are the ones axum extracts and serialises, so the document cannot claim a
//! body or an answer the handler does not have: a handler whose argument or answer has no
//! description here does not compile into the router.

use std::future::Future;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::auth::{AdminAuth, AgentAuth};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// Which bearer token an operation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Agent,
    Admin,
}

/// The parts of an operation a handler's signature tells.
#[derive(Debug, Default)]
pub struct Described {
    pub auth: Option<Auth>,
    pub reads_path: bool,
    /// The JSON request body.
    pub body: Option<Schema>,
    /// The query string's object schema (one parameter per property).
    pub query: Option<Schema>,
    /// The success answer: its media type and schema.
    pub answer: Option<(&'static str, Schema)>,
    /// Answers errors in the one error shape.
    pub errors: bool,
}

/// A handler argument (an extractor) that shows in the document, or says why not.
pub trait DescribeArg {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator);
}

/// A handler's answer.
pub trait DescribeAnswer {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator);
}

/// A handler, described by its arguments and answer (`Args` is the argument tuple).
pub trait DescribeHandler<Args> {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator);
}

macro_rules! describe_handler {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> DescribeHandler<($($arg,)*)> for F
        where
            F: FnOnce($($arg),*) -> Fut,
            Fut: Future,
            Fut::Output: DescribeAnswer,
            $($arg: DescribeArg,)*
        {
            fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
                $(<$arg as DescribeArg>::describe(described, generator);)*
                <Fut::Output as DescribeAnswer>::describe(described, generator);
            }
        }
    };
}

describe_handler!();
describe_handler!(T1);
describe_handler!(T1, T2);
describe_handler!(T1, T2, T3);
describe_handler!(T1, T2, T3, T4);
describe_handler!(T1, T2, T3, T4, T5);
describe_handler!(T1, T2, T3, T4, T5, T6);

impl<S> DescribeArg for State<S> {
    fn describe(_: &mut Described, _: &mut SchemaGenerator) {}
}

impl DescribeArg for AgentAuth {
    fn describe(described: &mut Described, _: &mut SchemaGenerator) {
        described.auth = Some(Auth::Agent);
    }
}

impl DescribeArg for AdminAuth {
    fn describe(described: &mut Described, _: &mut SchemaGenerator) {
        described.auth = Some(Auth::Admin);
    }
}

/// The path's parameters are declared with the route (their names are in the path);
/// this only records that the handler reads them.
impl<T> DescribeArg for ApiPath<T> {
    fn describe(described: &mut Described, _: &mut SchemaGenerator) {
        described.reads_path = true;
    }
}

/// Headers read by hand (`Last-Event-ID`) are described in the route's text.
impl DescribeArg for HeaderMap {
    fn describe(_: &mut Described, _: &mut SchemaGenerator) {}
}

impl<T: JsonSchema> DescribeArg for ApiJson<T> {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
        described.body = Some(generator.subschema_for::<T>());
    }
}

impl<T: JsonSchema> DescribeArg for crate::extract::ApiJsonOrEmpty<T> {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
        described.body = Some(generator.subschema_for::<T>());
    }
}

impl<T: JsonSchema> DescribeArg for ApiQuery<T> {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
        described.query = Some(T::json_schema(generator));
    }
}

impl<T: JsonSchema> DescribeAnswer for Json<T> {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
        described.answer = Some(("application/json", generator.subschema_for::<T>()));
    }
}

/// The status itself is declared with the route (`201` for a first append…).
impl<T: JsonSchema> DescribeAnswer for (StatusCode, Json<T>) {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
        <Json<T> as DescribeAnswer>::describe(described, generator);
    }
}

impl<T: DescribeAnswer> DescribeAnswer for Result<T, ApiError> {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
        described.errors = true;
        T::describe(described, generator);
    }
}

/// The frames' `data`, by event name, as an `x-sse-data` annotation (OpenAPI has no
/// words for server-sent events): the schemas land in the components like any other.
impl DescribeAnswer for crate::sse::EventStream {
    fn describe(described: &mut Described, generator: &mut SchemaGenerator) {
        use nexysync_domain::wire::sse;
        let stored = generator.subschema_for::<crate::raw::RawStoredEvent>();
        let data = serde_json::json!({
            sse::NEW_MESSAGE: stored,
            sse::NEW_REF: stored,
            sse::NEW_FILE: stored,
            sse::KV_UPDATE: stored,
            sse::MESSAGE_UPDATE: stored,
            sse::PRESENCE_CHANGE: generator.subschema_for::<sse::PresenceChange>(),
            sse::READY: generator.subschema_for::<sse::Ready>(),
            sse::CATCH_UP: generator.subschema_for::<sse::CatchUp>(),
            sse::CURSOR_TOO_OLD: generator.subschema_for::<sse::CursorTooOld>(),
        });
        described.answer = Some((
            "text/event-stream",
            schemars::json_schema!({
                "type": "string",
                "description": "Server-sent events (see docs/api.md): `event:` names the kind, `id:` is the stream sequence (absent for presence), `data:` is one line of JSON, whose schema by event name is in `x-sse-data`.",
                "x-sse-data": data,
            }),
        ));
    }
}
