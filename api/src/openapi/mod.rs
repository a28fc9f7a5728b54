//! The OpenAPI 3.1 document of the API, built from the same route table as the router.
//!
//! [`Routes`] is the only way routes are added (`routes::table`): each `get`/`post`/`put`
//! registers the handler on the axum router and records the operation, so a served route
//! is a documented route. What the operation takes and answers is read off the handler's
//! signature ([`describe`]); the route adds what a signature cannot say: a summary, the
//! success statuses, the path parameters' types. Schemas come from the types (schemars),
//! the same generator as `schemas/*.schema.json`, so the document's `Envelope` is the
//! events' envelope.
//!
//! The document is served at `GET /v1/openapi.json` (built once, on first use) and
//! checked in as `schemas/openapi.json`; `api/tests/openapi.rs` fails when they differ.

pub mod describe;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::handler::Handler;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use nexysync_domain::wire::ErrorBody;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use self::describe::{Auth, DescribeAnswer, DescribeHandler, Described};
use crate::state::AppState;

/// An HTTP method the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
        }
    }
}

/// What a route says about its operation beyond the handler's signature.
#[derive(Debug, Clone)]
pub struct Doc {
    summary: &'static str,
    description: Option<&'static str>,
    statuses: &'static [(u16, &'static str)],
    params: Vec<(&'static str, SchemaFn)>,
}

/// Builds a schema in the document's generator.
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// `200`, the answer.
pub const OK: &[(u16, &str)] = &[(200, "OK")];
/// A write: `201` when the event was appended, `200` for a retry of an appended one.
pub const APPENDED: &[(u16, &str)] = &[
    (201, "Appended: the event's id and stream sequence."),
    (
        200,
        "Already appended (a retried request with the same event id): `duplicate` is true.",
    ),
];

/// The operation's summary; answers `200` unless told otherwise.
pub fn doc(summary: &'static str) -> Doc {
    Doc {
        summary,
        description: None,
        statuses: OK,
        params: Vec::new(),
    }
}

fn param_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

impl Doc {
    /// Longer text: what a caller must know that the types do not say.
    pub fn description(mut self, text: &'static str) -> Self {
        self.description = Some(text);
        self
    }

    /// The success statuses, each with what it means.
    pub fn answers(mut self, statuses: &'static [(u16, &'static str)]) -> Self {
        self.statuses = statuses;
        self
    }

    /// A `{name}` of the path, in the form `T` parses (the handler reads it as text and
    /// parses it, to answer a bad one in the API's error shape).
    pub fn param<T: JsonSchema>(mut self, name: &'static str) -> Self {
        self.params.push((name, param_schema::<T>));
        self
    }
}

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    doc: Doc,
    describe: fn(&mut Described, &mut SchemaGenerator),
}

/// The router and the list of its operations, built together.
#[derive(Debug)]
pub struct Routes {
    router: Router<AppState>,
    endpoints: Vec<Endpoint>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! method {
    ($name:ident, $method:expr, $route:path) => {
        pub fn $name<H, T, A>(self, path: &'static str, handler: H, doc: Doc) -> Self
        where
            H: Handler<T, AppState> + DescribeHandler<A>,
            T: 'static,
        {
            self.add(
                $method,
                path,
                $route(handler),
                <H as DescribeHandler<A>>::describe,
                doc,
            )
        }
    };
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            endpoints: Vec::new(),
        }
    }

    method!(get, Method::Get, axum::routing::get);
    method!(post, Method::Post, axum::routing::post);
    method!(put, Method::Put, axum::routing::put);

    /// Panics on a route whose declared path parameters disagree with its path or its
    /// handler: a programming error, caught by every test that builds the router.
    fn add(
        mut self,
        method: Method,
        path: &'static str,
        route: MethodRouter<AppState>,
        describe: fn(&mut Described, &mut SchemaGenerator),
        doc: Doc,
    ) -> Self {
        let in_path: BTreeSet<&str> = path_params(path).collect();
        let declared: BTreeSet<&str> = doc.params.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            in_path, declared,
            "{path}: declare each path parameter with Doc::param"
        );
        let mut described = Described::default();
        describe(&mut described, &mut generator());
        assert_eq!(
            described.reads_path,
            !in_path.is_empty(),
            "{path}: a handler reads the path exactly when the path has parameters"
        );
        self.router = self.router.route(path, route);
        self.endpoints.push(Endpoint {
            method,
            path,
            doc,
            describe,
        });
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<Endpoint>) {
        (self.router, self.endpoints)
    }
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// The schema settings of the document: JSON Schema 2020-12 (OpenAPI 3.1's dialect), with
/// the definitions where OpenAPI keeps them.
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
        })
        .into_generator()
}

/// The OpenAPI document of `endpoints`.
pub fn document_of(endpoints: &[Endpoint]) -> Value {
    let mut generator = generator();
    let error = generator.subschema_for::<ErrorBody>().to_value();
    let mut paths = Map::new();
    for endpoint in endpoints {
        let mut described = Described::default();
        (endpoint.describe)(&mut described, &mut generator);
        let operation = operation(endpoint, described, &error, &mut generator);
        let item = paths
            .entry(endpoint.path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(endpoint.method.as_str().into(), operation);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "NexySync API",
            "version": "1",
            "description": "End-to-end-encrypted, event-sourced messaging for AI agents. \
                Writes are signed events (`Envelope`) whose content is sealed on the client; \
                the server routes ciphertext. Every error is `{ \"error\": { \"code\", \"message\" } }`. \
                The event schemas are also in `schemas/events/`; docs/api.md explains the rules.",
        },
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "agent_token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An agent's token (`nsa_…`); every query is scoped to its project.",
                },
                "admin_token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The server's admin token, for provisioning projects and agents.",
                },
            },
        },
    })
}

fn operation(
    endpoint: &Endpoint,
    described: Described,
    error: &Value,
    generator: &mut SchemaGenerator,
) -> Value {
    let mut operation = Map::new();
    operation.insert("operationId".into(), operation_id(endpoint).into());
    operation.insert("summary".into(), endpoint.doc.summary.into());
    if let Some(text) = endpoint.doc.description {
        operation.insert("description".into(), text.into());
    }
    operation.insert("tags".into(), json!([tag(endpoint.path)]));
    let security = match described.auth {
        Some(Auth::Agent) => json!([{ "agent_token": [] }]),
        Some(Auth::Admin) => json!([{ "admin_token": [] }]),
        None => json!([]),
    };
    operation.insert("security".into(), security);

    let mut parameters: Vec<Value> = endpoint
        .doc
        .params
        .iter()
        .map(|(name, schema)| {
            json!({ "name": name, "in": "path", "required": true, "schema": schema(generator) })
        })
        .collect();
    if let Some(query) = &described.query {
        parameters.extend(query_parameters(query));
    }
    if !parameters.is_empty() {
        operation.insert("parameters".into(), parameters.into());
    }
    if let Some(body) = described.body {
        operation.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": body } } }),
        );
    }

    let mut responses = Map::new();
    let answer = described.answer.map(|(media, schema)| {
        let mut content = Map::new();
        content.insert(media.into(), json!({ "schema": schema }));
        Value::Object(content)
    });
    for (status, text) in endpoint.doc.statuses {
        let mut response = json!({ "description": text });
        if let Some(content) = &answer {
            response["content"] = content.clone();
        }
        responses.insert(status.to_string(), response);
    }
    let error_content = json!({ "application/json": { "schema": error } });
    if described.auth.is_some() {
        responses.insert(
            "401".into(),
            json!({
                "description": "No token, or not a valid one (`unauthorized`).",
                "content": error_content,
            }),
        );
    }
    if described.errors {
        responses.insert(
            "default".into(),
            json!({
                "description": "An error: 4xx for the caller's mistake (the code names the rule), 5xx otherwise (saying nothing internal).",
                "content": error_content,
            }),
        );
    }
    operation.insert("responses".into(), responses.into());
    Value::Object(operation)
}

/// `post /v1/messages/{id}/reactions` → `post_messages_id_reactions`.
fn operation_id(endpoint: &Endpoint) -> String {
    let mut id = endpoint.method.as_str().to_owned();
    for segment in endpoint
        .path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "v1")
    {
        id.push('_');
        id.push_str(segment.trim_start_matches('{').trim_end_matches('}'));
    }
    id.replace(['.', '-'], "_")
}

/// The first path segment after `/v1`: `messages`, `files`…; `health` outside `/v1`.
fn tag(path: &str) -> &str {
    match path.strip_prefix("/v1/") {
        Some(rest) => rest.split(['/', '.']).next().unwrap_or(rest),
        None => "health",
    }
}

/// One query parameter per property of the query type's object schema.
fn query_parameters(query: &Schema) -> Vec<Value> {
    let required: BTreeSet<&str> = query
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(Value::Object(properties)) = query.get("properties") else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, schema)| {
            let mut schema = without_null(schema.clone());
            let description = schema.as_object_mut().and_then(|s| s.remove("description"));
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(name.as_str()),
                "schema": schema,
            });
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameter
        })
        .collect()
}

/// An optional query parameter's schema without its `null`: absent is how a query string
/// says "none" (`Option<T>` in the query type).
fn without_null(mut schema: Value) -> Value {
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            object.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(branches)) = object.get("anyOf") {
        let mut rest: Vec<Value> = branches
            .iter()
            .filter(|b| b.get("type").is_none_or(|t| t != "null"))
            .cloned()
            .collect();
        if rest.len() == 1 {
            object.remove("anyOf");
            if let Value::Object(inner) = rest.remove(0) {
                object.extend(inner);
            }
        }
    }
    schema
}

/// The document of the API's routes, as served and checked in: pretty JSON and a
/// final newline.
pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let (_, endpoints) = crate::routes::table().into_parts();
        let mut text = serde_json::to_string_pretty(&document_of(&endpoints))
            .expect("a JSON value always serialises");
        text.push('\n');
        text
    })
}

/// The answer of `GET /v1/openapi.json`.
#[derive(Debug)]
pub struct OpenApiDocument;

impl IntoResponse for OpenApiDocument {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            document_text(),
        )
            .into_response()
    }
}

impl DescribeAnswer for OpenApiDocument {
    fn describe(described: &mut Described, _: &mut SchemaGenerator) {
        described.answer = Some((
            "application/json",
            schemars::json_schema!({
                "type": "object",
                "description": "This OpenAPI 3.1 document.",
            }),
        ));
    }
}

/// `GET /v1/openapi.json`: no token needed.
pub async fn serve() -> OpenApiDocument {
    OpenApiDocument
}
