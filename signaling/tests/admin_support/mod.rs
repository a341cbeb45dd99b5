//! What the admin API tests share: a database of their own (a SQLite file in a temp directory,
//! or a fresh PostgreSQL database from `SFU_TEST_POSTGRES_URL`), an HTTP client that checks
//! every reply against the OpenAPI document, and a validator for the JSON Schema subset that
//! document uses (it refuses any keyword it does not know, so the document cannot drift into
//! unchecked territory).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use signaling::access_token::{ApiKeys, Grants, unix_now};
use signaling::admin_api::AdminApi;
use signaling::storage::{Backend, Storage};
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

pub const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

// ---------------------------------------------------------------- databases

pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

pub enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, database: String },
}

pub struct Db {
    pub url: String,
    pub storage: Storage,
    pub cleanup: Cleanup,
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(unique_name("sfu_admin_api_test"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("sfu.db").display());
        let storage = Storage::connect(&url).await.unwrap();
        Db {
            url,
            storage,
            cleanup: Cleanup::Dir(dir),
        }
    }

    pub async fn postgres() -> Option<Db> {
        let admin_url = match std::env::var("SFU_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("SFU_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "SFU_REQUIRE_POSTGRES=1 but SFU_TEST_POSTGRES_URL is not set"
                );
                eprintln!("PostgreSQL half skipped: SFU_TEST_POSTGRES_URL is not set");
                return None;
            }
        };
        sqlx::any::install_default_drivers();
        let database = unique_name("sfu_admin_test");
        let mut admin = AnyConnection::connect(&admin_url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &database);
        let storage = Storage::connect(&url).await.unwrap();
        assert_eq!(storage.backend(), Backend::Postgres);
        Some(Db {
            url,
            storage,
            cleanup: Cleanup::Postgres {
                admin_url,
                database,
            },
        })
    }

    pub async fn finish(self) {
        self.storage.close().await;
        match self.cleanup {
            Cleanup::Dir(dir) => std::fs::remove_dir_all(dir).unwrap(),
            Cleanup::Postgres {
                admin_url,
                database,
            } => {
                let mut admin = AnyConnection::connect(&admin_url).await.unwrap();
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE {database} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            }
        }
    }
}

// ---------------------------------------------------------------- OpenAPI subset validator

pub fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external $ref {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} does not resolve"));
            resolve(doc, target)
        }
        None => node,
    }
}

pub fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// Validates `value` against `schema` (JSON Schema subset); `at` names the place for errors.
pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let Some(keywords) = schema.as_object() else {
        return Err(format!("{at}: schema is not an object"));
    };
    for (keyword, rule) in keywords {
        match keyword.as_str() {
            "description" | "title" => {}
            "type" => {
                let names: Vec<&str> = match rule {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(format!("{at}: bad type keyword")),
                };
                if !names.iter().any(|name| type_matches(name, value)) {
                    return Err(format!("{at}: {value} is not of type {names:?}"));
                }
            }
            "properties" => {
                if let (Some(properties), Some(object)) = (rule.as_object(), value.as_object()) {
                    for (name, property) in properties {
                        if let Some(field) = object.get(name) {
                            validate(doc, property, field, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in rule.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        if !object.contains_key(name) {
                            return Err(format!("{at}: missing required {name}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(rule, &Value::Bool(false), "{at}: only false is supported");
                if let Some(object) = value.as_object() {
                    let known = keywords.get("properties").and_then(Value::as_object);
                    for name in object.keys() {
                        if !known.is_some_and(|k| k.contains_key(name)) {
                            return Err(format!("{at}: undocumented property {name}"));
                        }
                    }
                }
            }
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    validate(doc, rule, item, &format!("{at}[{i}]"))?;
                }
            }
            "enum" => {
                if !rule
                    .as_array()
                    .is_some_and(|options| options.contains(value))
                {
                    return Err(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(bound), Some(n)) = (rule.as_f64(), value.as_f64()) {
                    let ok = if keyword == "minimum" {
                        n >= bound
                    } else {
                        n <= bound
                    };
                    if !ok {
                        return Err(format!("{at}: {n} breaks {keyword} {bound}"));
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let (Some(bound), Some(s)) = (rule.as_u64(), value.as_str()) {
                    let len = s.chars().count() as u64;
                    let ok = if keyword == "minLength" {
                        len >= bound
                    } else {
                        len <= bound
                    };
                    if !ok {
                        return Err(format!("{at}: length {len} breaks {keyword} {bound}"));
                    }
                }
            }
            other => panic!("{at}: the validator does not support keyword {other:?}"),
        }
    }
    Ok(())
}

/// Checks one response against the operation `method template` of the document.
pub fn check_against_document(
    doc: &Value,
    method: &str,
    template: Option<&str>,
    status: u16,
    body: Option<&Value>,
) {
    let Some(template) = template else {
        // Unknown route or method: still our error shape.
        let error = json!({"$ref": "#/components/schemas/Error"});
        validate(doc, &error, body.expect("an error body"), "error").unwrap();
        return;
    };
    let operation = &doc["paths"][template][method.to_lowercase()];
    assert!(
        operation.is_object(),
        "{method} {template} is not in the document"
    );
    let response = operation["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {template}: status {status} is not documented"));
    let response = resolve(doc, response);
    match (response.get("content"), body) {
        (Some(content), Some(body)) => {
            let schema = &content["application/json"]["schema"];
            if let Err(error) = validate(doc, schema, body, "body") {
                panic!("{method} {template} {status}: {error}\n{body:#}");
            }
        }
        (None, None) => {}
        (Some(_), None) => panic!("{method} {template} {status}: documented body missing"),
        (None, Some(body)) => panic!("{method} {template} {status}: undocumented body {body}"),
    }
}

// ---------------------------------------------------------------- harness

#[derive(Clone)]
pub enum Auth {
    None,
    Bearer(String),
    Cookie(String),
    Header(&'static str, String),
}

pub enum Body {
    None,
    Json(Value),
    Raw(Option<&'static str>, Vec<u8>),
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Option<Value>,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body
            .as_ref()
            .and_then(|b| b["error"]["code"].as_str())
            .unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body
            .as_ref()
            .and_then(|b| b["error"]["message"].as_str())
            .unwrap_or("")
    }

    pub fn json(&self) -> &Value {
        self.body.as_ref().expect("a JSON body")
    }
}

pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: ApiKeys,
    pub doc: Value,
    pub server: tokio::task::JoinHandle<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn all_grants() -> Grants {
    Grants {
        join: true,
        publish: true,
        subscribe: true,
        publish_data: true,
        room_admin: true,
        room_create: true,
        hidden: true,
        recorder: true,
    }
}

pub fn room_admin_grants() -> Grants {
    Grants {
        room_admin: true,
        ..Grants::participant()
    }
}

impl Api {
    /// The admin API over `storage` alone (no live rooms).
    pub async fn start(storage: &Storage) -> Api {
        let keys = ApiKeys::default();
        keys.insert("key", SECRET.to_vec());
        let router = AdminApi::new(keys.clone(), storage.clone()).router();
        Api::serve(router, keys).await
    }

    /// Serves `router` on 127.0.0.1:0; `keys` mint the tests' tokens.
    pub async fn serve(router: axum::Router, keys: ApiKeys) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = format!("http://{addr}");
        let doc: Value = http
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Api {
            base,
            http,
            keys,
            doc,
            server,
        }
    }

    pub fn admin(&self, room: Option<&str>, grants: Grants) -> String {
        self.keys
            .mint_admin("ops", room, grants, Duration::from_secs(600), unix_now())
            .unwrap()
    }

    pub fn full(&self) -> Auth {
        Auth::Bearer(self.admin(None, all_grants()))
    }

    /// Sends a request and checks the reply against the document (`template: None` for a path
    /// that is not an operation).
    pub async fn call(
        &self,
        method: &str,
        template: Option<&str>,
        path: &str,
        auth: &Auth,
        body: Body,
    ) -> Reply {
        let method_value = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method_value, format!("{}{path}", self.base));
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.header("authorization", format!("Bearer {token}")),
            Auth::Cookie(value) => request.header("cookie", format!("sfu_session={value}")),
            Auth::Header(name, value) => request.header(*name, value.as_str()),
        };
        request = match body {
            Body::None => request,
            Body::Json(value) => request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&value).unwrap()),
            Body::Raw(content_type, bytes) => {
                let request = match content_type {
                    Some(ct) => request.header("content-type", ct),
                    None => request,
                };
                request.body(bytes)
            }
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            None
        } else {
            assert_eq!(
                headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{method} {path} answered {status} without JSON"
            );
            Some(
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {bytes:?}")),
            )
        };
        check_against_document(&self.doc, method, template, status, body.as_ref());
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn create_room(&self, name: &str) -> Value {
        let reply = self
            .call(
                "POST",
                Some("/api/v1/rooms"),
                "/api/v1/rooms",
                &self.full(),
                Body::Json(json!({ "name": name })),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        reply.body.unwrap()
    }

    pub async fn sign_in(&self, grants: Grants) -> (Reply, Option<String>) {
        let reply = self
            .call(
                "POST",
                Some("/api/v1/sessions"),
                "/api/v1/sessions",
                &Auth::Bearer(self.admin(None, grants)),
                Body::None,
            )
            .await;
        let cookie = reply
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|pair| pair.strip_prefix("sfu_session="))
            .map(str::to_owned);
        (reply, cookie)
    }
}

pub fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.code()),
        (status, code),
        "{what}: {:?}",
        reply.body
    );
}
