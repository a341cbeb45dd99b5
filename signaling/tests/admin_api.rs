//! The admin REST API over real HTTP: the real axum router on 127.0.0.1:0, a SQLite file in its
//! own temp directory, and the same against PostgreSQL when `SFU_TEST_POSTGRES_URL` is set
//! (`SFU_REQUIRE_POSTGRES=1` makes its absence a failure, as in `tests/storage.rs`).
//!
//! Every response any test receives is checked against `GET /api/v1/openapi.json`: its status
//! must be documented for that operation and its body must validate against the documented
//! schema (a small validator for the JSON Schema subset the document uses, which refuses any
//! keyword it does not know so the document cannot drift into unchecked territory).

mod admin_support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use signaling::access_token::{ApiKeys, Grants, GuestRole, unix_now};
use signaling::admin_api::{ErrorCode, HOST_SESSION_GRANTS, MAX_BODY, ROUTES};
use signaling::storage::Backend;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};

use admin_support::*;

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::Db::sqlite().await;
                super::$scenario(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::Db::postgres().await {
                    super::$scenario(&db).await;
                    db.finish().await;
                }
            }
        }
    )*};
}

on_both_backends!(
    every_endpoint_happy_path,
    bad_input_to_every_endpoint,
    out_of_range_values_are_refused_and_write_nothing,
    host_session_cookie_and_revocation,
    after_sign_out_no_stored_value_is_a_cookie,
);

// ---------------------------------------------------------------- the document itself

#[tokio::test]
async fn the_document_describes_exactly_the_routes_and_error_codes() {
    let db = Db::sqlite().await;
    let api = Api::start(&db.storage).await;
    let doc = &api.doc;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes);

    // Every route is really routed: none answers `not_found` from the fallback.
    for (method, template) in ROUTES {
        let path = template
            .replace("{name}", "nosuchroom")
            .replace("{code}", "abc-defg-hjk")
            .replace("{id}", "999")
            .replace("{identity}", "nobody")
            .replace("{track}", "t1");
        let reply = api
            .call(method, Some(template), &path, &Auth::None, Body::None)
            .await;
        assert_ne!(
            reply.code(),
            "not_found",
            "{method} {template} is not routed"
        );
        assert_ne!(reply.status, 405, "{method} {template} is not routed");
    }

    // The documented error codes are exactly ErrorCode::ALL.
    let mut codes: Vec<&str> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
    let mut ours: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    codes.sort_unstable();
    ours.sort_unstable();
    assert_eq!(codes, ours);

    // Every $ref resolves (resolve panics otherwise) and every schema uses known keywords.
    fn walk(doc: &Value, node: &Value) {
        match node {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    resolve(doc, node);
                }
                map.values().for_each(|v| walk(doc, v));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
            _ => {}
        }
    }
    walk(doc, doc);

    // The validator can fail: a wrong type, a missing field and an extra field are caught.
    let room = json!({"$ref": "#/components/schemas/Room"});
    let good = json!({"name":"a","meeting_code":"abc-defg-hjk","max_participants":1,
        "empty_timeout_secs":0,"metadata":"","created_at_ms":1,"updated_at_ms":1});
    validate(doc, &room, &good, "room").unwrap();
    let mut wrong = good.clone();
    wrong["max_participants"] = json!("1");
    assert!(validate(doc, &room, &wrong, "room").is_err());
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("name");
    assert!(validate(doc, &room, &missing, "room").is_err());
    let mut extra = good;
    extra["secret"] = json!(1);
    assert!(validate(doc, &room, &extra, "room").is_err());

    drop(api);
    db.finish().await;
}

// ---------------------------------------------------------------- scenarios

async fn every_endpoint_happy_path(db: &Db) {
    let api = Api::start(&db.storage).await;
    let full = api.full();

    // Create, with defaults and with every field.
    let created = api.create_room("standup").await;
    assert_eq!(created["name"], "standup");
    assert_eq!(created["max_participants"], 100);
    assert_eq!(created["empty_timeout_secs"], 300);
    let code = created["meeting_code"].as_str().unwrap().to_owned();
    assert_eq!(
        code.parse::<signaling::meeting_code::MeetingCode>()
            .unwrap()
            .as_str(),
        code
    );
    let reply = api
        .call(
            "POST",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &full,
            Body::Json(
                json!({"name":"board","max_participants":8,"empty_timeout_secs":60,
                "metadata":"{\"topic\":\"budget\"}"}),
            ),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.headers.get("location").unwrap(),
        "/api/v1/rooms/board"
    );
    assert_eq!(reply.json()["max_participants"], 8);
    assert_eq!(reply.json()["metadata"], "{\"topic\":\"budget\"}");
    assert_ne!(reply.json()["meeting_code"], created["meeting_code"]);
    // A taken name is a conflict and changes nothing.
    let reply = api
        .call(
            "POST",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &full,
            Body::Json(json!({"name":"standup","max_participants":3})),
        )
        .await;
    assert_error(&reply, 409, "conflict", "taken name");

    // Get.
    let reply = api
        .call(
            "GET",
            Some("/api/v1/rooms/{name}"),
            "/api/v1/rooms/standup",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), &created);

    // List, page by page.
    api.create_room("alpha").await;
    api.create_room("zulu").await;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/rooms?limit=2&cursor={c}"),
            None => "/api/v1/rooms?limit=2".to_owned(),
        };
        let reply = api
            .call("GET", Some("/api/v1/rooms"), &path, &full, Body::None)
            .await;
        assert_eq!(reply.status, 200);
        pages += 1;
        for room in reply.json()["rooms"].as_array().unwrap() {
            names.push(room["name"].as_str().unwrap().to_owned());
        }
        match reply.json()["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["alpha", "board", "standup", "zulu"]);
    assert_eq!(pages, 2);

    // Patch.
    let reply = api
        .call(
            "PATCH",
            Some("/api/v1/rooms/{name}"),
            "/api/v1/rooms/standup",
            &full,
            Body::Json(json!({"max_participants": 12, "metadata": "daily"})),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["max_participants"], 12);
    assert_eq!(reply.json()["metadata"], "daily");
    assert_eq!(reply.json()["empty_timeout_secs"], 300);
    assert_eq!(
        db.storage
            .room_by_name("standup")
            .await
            .unwrap()
            .max_participants,
        12
    );

    // Meeting codes resolve, as stored and as typed, to the room's name only.
    let typed = code.to_uppercase().replace('-', "");
    for path_code in [code.clone(), typed] {
        let reply = api
            .call(
                "GET",
                Some("/api/v1/meeting-codes/{code}"),
                &format!("/api/v1/meeting-codes/{path_code}"),
                &Auth::None,
                Body::None,
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json(),
            &json!({"room": "standup", "meeting_code": code})
        );
    }
    let reply = api
        .call(
            "GET",
            Some("/api/v1/meeting-codes/{code}"),
            "/api/v1/meeting-codes/zzz-zzzz-zzz",
            &Auth::None,
            Body::None,
        )
        .await;
    assert_error(&reply, 404, "room_not_found", "unknown code");

    // Invitations admit a guest to that room with the role's grants, and no other room.
    for (role, name) in [
        (GuestRole::Viewer, "viewer"),
        (GuestRole::Speaker, "speaker"),
    ] {
        let reply = api
            .call(
                "POST",
                Some("/api/v1/rooms/{name}/invitations"),
                "/api/v1/rooms/standup/invitations",
                &full,
                Body::Json(json!({"role": name, "ttl_secs": 3600})),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        assert_eq!(reply.json()["meeting_code"], code.as_str());
        assert_eq!(reply.json()["role"], name);
        let invitation = reply.json()["invitation"].as_str().unwrap();
        let guest = api
            .keys
            .admit_guest(invitation, "standup", "Guest", unix_now())
            .unwrap();
        assert_eq!(guest.grants, role.grants());
        assert_eq!(guest.room, "standup");
        assert!(
            api.keys
                .admit_guest(invitation, "board", "Guest", unix_now())
                .is_err()
        );
    }
    // A room-scoped host may invite to its room, but not as more than it holds.
    let host = Auth::Bearer(api.admin(
        Some("standup"),
        Grants {
            room_admin: true,
            join: true,
            subscribe: true,
            ..Grants::default()
        },
    ));
    let invite = |role: &'static str| {
        api.call(
            "POST",
            Some("/api/v1/rooms/{name}/invitations"),
            "/api/v1/rooms/standup/invitations",
            &host,
            Body::Json(json!({ "role": role })),
        )
    };
    assert_eq!(invite("viewer").await.status, 201);
    assert_error(
        &invite("speaker").await,
        403,
        "missing_grant",
        "speaker beyond the host",
    );

    // Meetings history, written by the room side through storage.
    let s = &db.storage;
    let t0 = 1_700_000_000_000;
    let first = s.start_meeting("standup", t0).await.unwrap();
    s.record_join(first.id, "alice", "Alice", t0 + 1)
        .await
        .unwrap();
    s.record_join(first.id, "bob", "Bob", t0 + 2).await.unwrap();
    s.record_leave(first.id, "bob", t0 + 500).await.unwrap();
    s.end_meeting(first.id, t0 + 1000).await.unwrap();
    let second = s.start_meeting("standup", t0 + 5000).await.unwrap();
    let reply = api
        .call(
            "GET",
            Some("/api/v1/rooms/{name}/meetings"),
            "/api/v1/rooms/standup/meetings?limit=10",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let ids: Vec<i64> = reply.json()["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second.id.0, first.id.0]);
    let reply = api
        .call(
            "GET",
            Some("/api/v1/meetings/{id}"),
            &format!("/api/v1/meetings/{}", first.id.0),
            &full,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let detail = reply.json();
    assert_eq!(detail["meeting"]["peak_participants"], 2);
    assert_eq!(detail["meeting"]["total_participants"], 2);
    assert_eq!(detail["meeting"]["ended_at_ms"], t0 + 1000);
    assert_eq!(detail["participants"][0]["identity"], "alice");
    assert_eq!(detail["participants"][0]["left_at_ms"], t0 + 1000);
    assert_eq!(detail["participants"][1]["display_name"], "Bob");
    assert_eq!(detail["participants"][1]["left_at_ms"], t0 + 500);
    let reply = api
        .call(
            "GET",
            Some("/api/v1/meetings/{id}"),
            "/api/v1/meetings/424242",
            &full,
            Body::None,
        )
        .await;
    assert_error(&reply, 404, "meeting_not_found", "unknown meeting");

    // Delete: the room, its code and its history are gone.
    let reply = api
        .call(
            "DELETE",
            Some("/api/v1/rooms/{name}"),
            "/api/v1/rooms/standup",
            &full,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 204);
    for (template, path) in [
        ("/api/v1/rooms/{name}", "/api/v1/rooms/standup".to_owned()),
        (
            "/api/v1/rooms/{name}/meetings",
            "/api/v1/rooms/standup/meetings".to_owned(),
        ),
        (
            "/api/v1/meeting-codes/{code}",
            format!("/api/v1/meeting-codes/{code}"),
        ),
    ] {
        let reply = api
            .call("GET", Some(template), path.as_str(), &full, Body::None)
            .await;
        assert_error(&reply, 404, "room_not_found", path.as_str());
    }
    let reply = api
        .call(
            "DELETE",
            Some("/api/v1/rooms/{name}"),
            "/api/v1/rooms/standup",
            &full,
            Body::None,
        )
        .await;
    assert_error(&reply, 404, "room_not_found", "second delete");

    // Unknown routes and methods are JSON errors too.
    let reply = api
        .call("GET", None, "/api/v1/nothing", &full, Body::None)
        .await;
    assert_error(&reply, 404, "not_found", "unknown route");
    let reply = api
        .call("PUT", None, "/api/v1/rooms", &full, Body::None)
        .await;
    assert_error(&reply, 405, "method_not_allowed", "wrong method");
}

/// How an endpoint authenticates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    Admin,
    /// `POST /sessions`: an admin token (a cookie authenticates but is refused).
    TokenForSession,
    /// `DELETE /sessions/current`: the cookie only.
    Cookie,
}

struct Endpoint {
    method: &'static str,
    template: &'static str,
    path: String,
    body: Option<Value>,
    access: Access,
    /// Paths with a malformed parameter, answered `invalid_parameter`.
    bad_paths: Vec<String>,
}

fn forged_tokens(api: &Api) -> Vec<(&'static str, String, &'static str)> {
    let now = unix_now();
    let other = ApiKeys::default();
    other.insert("key", b"not the server's secret, but as long".to_vec());
    let stranger = ApiKeys::default();
    stranger.insert("stranger", SECRET.to_vec());
    let b64 = |s: &str| {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT","kid":"key"}"#),
        b64(&format!(
            r#"{{"iss":"key","sub":"ops","aud":"admin","grants":{{"room_admin":true,"room_create":true}},"nbf":{now},"exp":{},"jti":"x1"}}"#,
            now + 600
        ))
    );
    vec![
        ("garbage", "not-a-jwt".to_owned(), "token_malformed"),
        (
            "expired",
            api.keys
                .mint_admin(
                    "ops",
                    None,
                    all_grants(),
                    Duration::from_secs(60),
                    now - 3600,
                )
                .unwrap(),
            "token_expired",
        ),
        (
            "not yet valid",
            api.keys
                .mint_admin(
                    "ops",
                    None,
                    all_grants(),
                    Duration::from_secs(60),
                    now + 3600,
                )
                .unwrap(),
            "token_not_yet_valid",
        ),
        (
            "bad signature",
            other
                .mint_admin("ops", None, all_grants(), Duration::from_secs(60), now)
                .unwrap(),
            "token_bad_signature",
        ),
        (
            "unknown key",
            stranger
                .mint_admin("ops", None, all_grants(), Duration::from_secs(60), now)
                .unwrap(),
            "token_unknown_key",
        ),
        ("alg none", alg_none, "token_algorithm_not_allowed"),
        (
            "join token",
            api.keys
                .mint_join(
                    "ops",
                    "Ops",
                    "room-b",
                    all_grants(),
                    Duration::from_secs(60),
                    now,
                )
                .unwrap(),
            "token_wrong_kind",
        ),
    ]
}

async fn bad_input_to_every_endpoint(db: &Db) {
    let api = Api::start(&db.storage).await;
    api.create_room("room-a").await;
    let room_b = api.create_room("room-b").await;
    let code_b = room_b["meeting_code"].as_str().unwrap().to_owned();
    let meeting = db
        .storage
        .start_meeting("room-b", 1_700_000_000_000)
        .await
        .unwrap();
    let (_, Some(cookie)) = api.sign_in(HOST_SESSION_GRANTS).await else {
        panic!("no session cookie");
    };
    let before = snapshot(db).await;

    let room_paths = |suffix: &str| {
        [
            "bad%20name",
            "..%2Fetc",
            "a%00b",
            &"x".repeat(65),
            ".hidden",
        ]
        .iter()
        .map(|bad| format!("/api/v1/rooms/{bad}{suffix}"))
        .collect::<Vec<_>>()
    };
    let participant_paths = |suffix: &str| {
        let mut paths = room_paths(&format!("/participants/alice{suffix}"));
        for bad in ["bad%20id", "..%2Fetc", "a%2Fb", &"y".repeat(65)] {
            paths.push(format!("/api/v1/rooms/room-b/participants/{bad}{suffix}"));
        }
        paths
    };
    let endpoints = vec![
        Endpoint {
            method: "GET",
            template: "/api/v1/openapi.json",
            path: "/api/v1/openapi.json".into(),
            body: None,
            access: Access::Public,
            bad_paths: vec![],
        },
        Endpoint {
            method: "POST",
            template: "/api/v1/sessions",
            path: "/api/v1/sessions".into(),
            body: Some(json!({"ttl_secs": 600})),
            access: Access::TokenForSession,
            bad_paths: vec![],
        },
        Endpoint {
            method: "DELETE",
            template: "/api/v1/sessions/current",
            path: "/api/v1/sessions/current".into(),
            body: None,
            access: Access::Cookie,
            bad_paths: vec![],
        },
        Endpoint {
            method: "POST",
            template: "/api/v1/rooms",
            path: "/api/v1/rooms".into(),
            body: Some(json!({"name": "room-b2"})),
            access: Access::Admin,
            bad_paths: vec![],
        },
        Endpoint {
            method: "GET",
            template: "/api/v1/rooms",
            path: "/api/v1/rooms".into(),
            body: None,
            access: Access::Admin,
            bad_paths: vec![
                "/api/v1/rooms?limit=0".into(),
                "/api/v1/rooms?limit=501".into(),
                "/api/v1/rooms?limit=ten".into(),
                "/api/v1/rooms?cursor=..%2Fetc".into(),
                "/api/v1/rooms?page=2".into(),
            ],
        },
        Endpoint {
            method: "GET",
            template: "/api/v1/rooms/{name}",
            path: "/api/v1/rooms/room-b".into(),
            body: None,
            access: Access::Admin,
            bad_paths: room_paths(""),
        },
        Endpoint {
            method: "PATCH",
            template: "/api/v1/rooms/{name}",
            path: "/api/v1/rooms/room-b".into(),
            body: Some(json!({"metadata": "changed"})),
            access: Access::Admin,
            bad_paths: room_paths(""),
        },
        Endpoint {
            method: "DELETE",
            template: "/api/v1/rooms/{name}",
            path: "/api/v1/rooms/room-b".into(),
            body: None,
            access: Access::Admin,
            bad_paths: room_paths(""),
        },
        Endpoint {
            method: "GET",
            template: "/api/v1/meeting-codes/{code}",
            path: format!("/api/v1/meeting-codes/{code_b}"),
            body: None,
            access: Access::Public,
            bad_paths: vec![
                "/api/v1/meeting-codes/ab".into(),
                "/api/v1/meeting-codes/..%2Fetc".into(),
                format!("/api/v1/meeting-codes/{}", "a".repeat(100)),
                "/api/v1/meeting-codes/abc%00def".into(),
            ],
        },
        Endpoint {
            method: "POST",
            template: "/api/v1/rooms/{name}/invitations",
            path: "/api/v1/rooms/room-b/invitations".into(),
            body: Some(json!({"role": "viewer"})),
            access: Access::Admin,
            bad_paths: room_paths("/invitations"),
        },
        Endpoint {
            method: "GET",
            template: "/api/v1/rooms/{name}/meetings",
            path: "/api/v1/rooms/room-b/meetings".into(),
            body: None,
            access: Access::Admin,
            bad_paths: [
                room_paths("/meetings"),
                vec![
                    "/api/v1/rooms/room-b/meetings?limit=0".into(),
                    "/api/v1/rooms/room-b/meetings?before=1".into(),
                ],
            ]
            .concat(),
        },
        Endpoint {
            method: "GET",
            template: "/api/v1/meetings/{id}",
            path: format!("/api/v1/meetings/{}", meeting.id.0),
            body: None,
            access: Access::Admin,
            bad_paths: ["abc", "0", "-1", "1.5", "99999999999999999999999"]
                .iter()
                .map(|bad| format!("/api/v1/meetings/{bad}"))
                .collect(),
        },
        Endpoint {
            method: "GET",
            template: "/api/v1/rooms/{name}/participants",
            path: "/api/v1/rooms/room-b/participants".into(),
            body: None,
            access: Access::Admin,
            bad_paths: room_paths("/participants"),
        },
        Endpoint {
            method: "GET",
            template: "/api/v1/rooms/{name}/participants/{identity}",
            path: "/api/v1/rooms/room-b/participants/alice".into(),
            body: None,
            access: Access::Admin,
            bad_paths: participant_paths(""),
        },
        Endpoint {
            method: "PATCH",
            template: "/api/v1/rooms/{name}/participants/{identity}",
            path: "/api/v1/rooms/room-b/participants/alice".into(),
            body: Some(json!({"grants": {"join": true, "subscribe": true}})),
            access: Access::Admin,
            bad_paths: participant_paths(""),
        },
        Endpoint {
            method: "DELETE",
            template: "/api/v1/rooms/{name}/participants/{identity}",
            path: "/api/v1/rooms/room-b/participants/alice".into(),
            body: None,
            access: Access::Admin,
            bad_paths: participant_paths(""),
        },
        Endpoint {
            method: "POST",
            template: "/api/v1/rooms/{name}/participants/{identity}/tracks/{track}/mute",
            path: "/api/v1/rooms/room-b/participants/alice/tracks/TR_abc/mute".into(),
            body: Some(json!({"muted": true})),
            access: Access::Admin,
            bad_paths: [
                participant_paths("/tracks/TR_abc/mute"),
                ["bad%20track", "..%2Fetc", "%00"]
                    .iter()
                    .map(|bad| format!("/api/v1/rooms/room-b/participants/alice/tracks/{bad}/mute"))
                    .collect(),
            ]
            .concat(),
        },
    ];
    assert_eq!(
        endpoints.len(),
        ROUTES.len(),
        "an endpoint is missing from the matrix"
    );

    let full = api.full();
    let scoped = Auth::Bearer(api.admin(Some("room-a"), all_grants()));
    let no_grants = Auth::Bearer(api.admin(None, Grants::participant()));
    let forged = forged_tokens(&api);
    let unknown_cookie = Auth::Cookie("ab".repeat(32));
    let mut checked = 0;

    let api_ref = &api;
    for e in &endpoints {
        let what = |case: &str| format!("{} {} {case}", e.method, e.path);
        let body = || match &e.body {
            Some(value) => Body::Json(value.clone()),
            None => Body::None,
        };
        let call = |auth: Auth, path: String, body: Body| {
            let template = e.template;
            let method = e.method;
            async move {
                api_ref
                    .call(method, Some(template), &path, &auth, body)
                    .await
            }
        };

        match e.access {
            Access::Public => {
                let reply = call(Auth::None, e.path.clone(), body()).await;
                assert_eq!(reply.status, 200, "{}", what("public"));
                checked += 1;
            }
            Access::Cookie => {
                for (case, auth) in [
                    ("no credentials", Auth::None),
                    ("a bearer token is not a session", full.clone()),
                ] {
                    let reply = call(auth, e.path.clone(), body()).await;
                    assert_error(&reply, 401, "unauthenticated", &what(case));
                    checked += 1;
                }
                for (case, auth) in [
                    ("unknown cookie", unknown_cookie.clone()),
                    ("malformed cookie", Auth::Cookie("xyz".into())),
                    ("uppercase cookie", Auth::Cookie(cookie.to_uppercase())),
                ] {
                    let reply = call(auth, e.path.clone(), body()).await;
                    assert_error(&reply, 401, "invalid_session", &what(case));
                    checked += 1;
                }
            }
            Access::Admin | Access::TokenForSession => {
                let reply = call(Auth::None, e.path.clone(), body()).await;
                assert_error(&reply, 401, "unauthenticated", &what("no credentials"));
                let reply = call(
                    Auth::Header("authorization", format!("Basic {}", "b3BzOnNlY3JldA==")),
                    e.path.clone(),
                    body(),
                )
                .await;
                assert_error(&reply, 401, "invalid_token", &what("basic auth"));
                let reply = call(
                    Auth::Header("authorization", "Bearer".into()),
                    e.path.clone(),
                    body(),
                )
                .await;
                assert_error(&reply, 401, "invalid_token", &what("empty bearer"));
                checked += 3;
                for (case, token, reason) in &forged {
                    let reply = call(Auth::Bearer(token.clone()), e.path.clone(), body()).await;
                    assert_error(&reply, 401, "invalid_token", &what(case));
                    assert!(
                        reply.message().contains(reason),
                        "{}: {}",
                        what(case),
                        reply.message()
                    );
                    checked += 1;
                }
                // A bad bearer token is refused even with a good cookie beside it (the cookie
                // alone would succeed, see `host_session_cookie_and_revocation`).
                let mut request = api.http.request(
                    Method::from_bytes(e.method.as_bytes()).unwrap(),
                    format!("{}{}", api.base, e.path),
                );
                request = request
                    .header("authorization", "Bearer not-a-jwt")
                    .header("cookie", format!("sfu_session={cookie}"));
                let status = request.send().await.unwrap().status().as_u16();
                assert_eq!(status, 401, "{}", what("bad bearer beside a good cookie"));
                let reply = call(unknown_cookie.clone(), e.path.clone(), body()).await;
                assert_error(&reply, 401, "invalid_session", &what("unknown cookie"));
                let reply = call(scoped.clone(), e.path.clone(), body()).await;
                assert_error(&reply, 403, "room_not_in_scope", &what("token for room-a"));
                let reply = call(no_grants.clone(), e.path.clone(), body()).await;
                assert_error(&reply, 403, "missing_grant", &what("no admin grants"));
                checked += 4;

                if e.body.is_some() {
                    let raw =
                        |ct: Option<&'static str>, bytes: &[u8]| Body::Raw(ct, bytes.to_vec());
                    let mut cases = vec![
                        (
                            "truncated JSON",
                            raw(Some("application/json"), b"{\""),
                            400,
                            "malformed_json",
                        ),
                        (
                            "not JSON",
                            raw(Some("application/json"), b"name=x"),
                            400,
                            "malformed_json",
                        ),
                        (
                            "a JSON array",
                            raw(Some("application/json"), b"[1,2]"),
                            422,
                            "invalid_body",
                        ),
                        (
                            "unknown field",
                            Body::Json(
                                json!({"name":"x","role":"viewer","ttl_secs":600,"metadata":"m","evil":true}),
                            ),
                            422,
                            "invalid_body",
                        ),
                        (
                            "wrong types",
                            Body::Json(
                                json!({"name":7,"role":7,"ttl_secs":"long","metadata":7,"max_participants":"many"}),
                            ),
                            422,
                            "invalid_body",
                        ),
                        (
                            "text/plain",
                            raw(Some("text/plain"), b"{}"),
                            415,
                            "unsupported_media_type",
                        ),
                        (
                            "no content type",
                            raw(None, b"{}"),
                            415,
                            "unsupported_media_type",
                        ),
                        (
                            "form content type",
                            raw(Some("application/x-www-form-urlencoded"), b"name=x"),
                            415,
                            "unsupported_media_type",
                        ),
                        (
                            "oversize",
                            raw(Some("application/json"), &oversize_json()),
                            413,
                            "body_too_large",
                        ),
                    ];
                    if e.access != Access::TokenForSession {
                        cases.push((
                            "empty body",
                            raw(Some("application/json"), b""),
                            400,
                            "malformed_json",
                        ));
                        cases.push((
                            "null",
                            raw(Some("application/json"), b"null"),
                            422,
                            "invalid_body",
                        ));
                    }
                    for (case, bad_body, status, code) in cases {
                        let reply = call(full.clone(), e.path.clone(), bad_body).await;
                        assert_error(&reply, status, code, &what(case));
                        checked += 1;
                    }
                } else if e.method == "DELETE" {
                    let reply = call(
                        full.clone(),
                        e.path.clone(),
                        Body::Json(json!({"force": true})),
                    )
                    .await;
                    assert_error(&reply, 400, "unexpected_body", &what("a body"));
                    let reply = call(
                        full.clone(),
                        e.path.clone(),
                        Body::Raw(Some("application/json"), oversize_json()),
                    )
                    .await;
                    assert_error(&reply, 413, "body_too_large", &what("oversize body"));
                    checked += 2;
                }
            }
        }
        for bad in &e.bad_paths {
            let auth = if e.access == Access::Public {
                Auth::None
            } else {
                full.clone()
            };
            let reply = call(auth, bad.clone(), body()).await;
            assert_error(
                &reply,
                400,
                "invalid_parameter",
                &format!("{} {bad}", e.method),
            );
            checked += 1;
        }
    }
    eprintln!(
        "{:?}: {checked} bad requests answered as expected",
        db.storage.backend()
    );
    assert!(checked > 150, "only {checked} cases");

    // Nothing was written by any refused request.
    assert_eq!(snapshot(db).await, before);
}

/// A JSON body just over the limit.
fn oversize_json() -> Vec<u8> {
    let mut body = b"{\"metadata\":\"".to_vec();
    body.extend(std::iter::repeat_n(b'x', MAX_BODY));
    body.extend(b"\"}");
    body
}

/// Everything stored that a request could change.
async fn snapshot(db: &Db) -> (Vec<signaling::storage::Room>, Vec<i64>, usize) {
    let rooms = db.storage.list_rooms(None, 500).await.unwrap().rooms;
    let mut meetings = Vec::new();
    for room in &rooms {
        for m in db.storage.list_meetings(&room.name, 500).await.unwrap() {
            meetings.push(m.id.0);
        }
    }
    let mut raw = AnyConnection::connect(&db.url).await.unwrap();
    let sessions: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM host_sessions WHERE revoked_at_ms IS NULL")
            .fetch_one(&mut raw)
            .await
            .unwrap()
            .get("n");
    raw.close().await.unwrap();
    (rooms, meetings, usize::try_from(sessions).unwrap())
}

async fn out_of_range_values_are_refused_and_write_nothing(db: &Db) {
    let api = Api::start(&db.storage).await;
    api.create_room("room-a").await;
    let before = snapshot(db).await;
    let full = api.full();
    let cases: Vec<(&str, &str, &str, Value, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "../etc"}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": ""}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "x".repeat(65)}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "max_participants": 0}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "max_participants": 10001}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "max_participants": -1}),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "max_participants": 1.5}),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "empty_timeout_secs": 604801}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "metadata": "a\u{0}b"}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "metadata": "\u{1b}[31m"}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "new", "metadata": "x".repeat(4097)}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"max_participants": 5}),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/api/v1/rooms",
            "/api/v1/rooms",
            json!({"name": "room-a"}),
            409,
            "conflict",
        ),
        (
            "PATCH",
            "/api/v1/rooms/{name}",
            "/api/v1/rooms/room-a",
            json!({}),
            422,
            "invalid_body",
        ),
        (
            "PATCH",
            "/api/v1/rooms/{name}",
            "/api/v1/rooms/room-a",
            json!({"max_participants": 0}),
            422,
            "invalid_field",
        ),
        (
            "PATCH",
            "/api/v1/rooms/{name}",
            "/api/v1/rooms/room-a",
            json!({"max_participants": 5, "metadata": "x".repeat(5000)}),
            422,
            "invalid_field",
        ),
        (
            "PATCH",
            "/api/v1/rooms/{name}",
            "/api/v1/rooms/room-a",
            json!({"name": "renamed"}),
            422,
            "invalid_body",
        ),
        (
            "PATCH",
            "/api/v1/rooms/{name}",
            "/api/v1/rooms/nosuch",
            json!({"metadata": "x"}),
            404,
            "room_not_found",
        ),
        (
            "POST",
            "/api/v1/rooms/{name}/invitations",
            "/api/v1/rooms/room-a/invitations",
            json!({"role": "admin"}),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/api/v1/rooms/{name}/invitations",
            "/api/v1/rooms/room-a/invitations",
            json!({}),
            422,
            "invalid_body",
        ),
        (
            "POST",
            "/api/v1/rooms/{name}/invitations",
            "/api/v1/rooms/room-a/invitations",
            json!({"role": "viewer", "ttl_secs": 0}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms/{name}/invitations",
            "/api/v1/rooms/room-a/invitations",
            json!({"role": "viewer", "ttl_secs": 604801}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/rooms/{name}/invitations",
            "/api/v1/rooms/nosuch/invitations",
            json!({"role": "viewer"}),
            404,
            "room_not_found",
        ),
        (
            "POST",
            "/api/v1/sessions",
            "/api/v1/sessions",
            json!({"ttl_secs": 59}),
            422,
            "invalid_field",
        ),
        (
            "POST",
            "/api/v1/sessions",
            "/api/v1/sessions",
            json!({"ttl_secs": 2592001}),
            422,
            "invalid_field",
        ),
    ];
    for (method, template, path, body, status, code) in cases {
        let reply = api
            .call(
                method,
                Some(template),
                path,
                &full,
                Body::Json(body.clone()),
            )
            .await;
        assert_error(&reply, status, code, &format!("{method} {path} {body}"));
    }
    // Duplicate keys in a body are refused, not resolved to the last one.
    let reply = api
        .call(
            "PATCH",
            Some("/api/v1/rooms/{name}"),
            "/api/v1/rooms/room-a",
            &full,
            Body::Raw(
                Some("application/json"),
                br#"{"metadata":"a","metadata":"b"}"#.to_vec(),
            ),
        )
        .await;
    assert_error(&reply, 422, "invalid_body", "duplicate key");
    assert_eq!(snapshot(db).await, before);
}

#[tokio::test]
async fn participants_need_live_rooms() {
    let db = Db::sqlite().await;
    let api = Api::start(&db.storage).await;
    api.create_room("standup").await;
    let full = api.full();
    let calls: [(&str, &str, &str, Body); 5] = [
        (
            "GET",
            "/api/v1/rooms/{name}/participants",
            "/api/v1/rooms/standup/participants",
            Body::None,
        ),
        (
            "GET",
            "/api/v1/rooms/{name}/participants/{identity}",
            "/api/v1/rooms/standup/participants/alice",
            Body::None,
        ),
        (
            "PATCH",
            "/api/v1/rooms/{name}/participants/{identity}",
            "/api/v1/rooms/standup/participants/alice",
            Body::Json(json!({"grants":{"join":true}})),
        ),
        (
            "DELETE",
            "/api/v1/rooms/{name}/participants/{identity}",
            "/api/v1/rooms/standup/participants/alice",
            Body::None,
        ),
        (
            "POST",
            "/api/v1/rooms/{name}/participants/{identity}/tracks/{track}/mute",
            "/api/v1/rooms/standup/participants/alice/tracks/TR_a/mute",
            Body::Json(json!({"muted":true})),
        ),
    ];
    for (method, template, path, body) in calls {
        let reply = api.call(method, Some(template), path, &full, body).await;
        assert_error(&reply, 503, "unavailable", path);
    }
    drop(api);
    db.finish().await;
}

fn cookie_attributes(set_cookie: &str) -> (String, Vec<String>) {
    let mut parts = set_cookie.split(';').map(|p| p.trim().to_owned());
    let pair = parts.next().unwrap();
    (pair, parts.collect())
}

async fn host_session_cookie_and_revocation(db: &Db) {
    let api = Api::start(&db.storage).await;
    api.create_room("standup").await;

    let (reply, cookie) = api.sign_in(HOST_SESSION_GRANTS).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let cookie = cookie.expect("a session cookie");
    let set_cookie = reply.headers.get("set-cookie").unwrap().to_str().unwrap();
    let (pair, attributes) = cookie_attributes(set_cookie);
    assert_eq!(pair, format!("sfu_session={cookie}"));
    assert_eq!(cookie.len(), 64, "256 bits as hex");
    assert!(cookie.bytes().all(|b| b.is_ascii_hexdigit()));
    for expected in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api",
        "Max-Age=28800",
    ] {
        assert!(
            attributes.iter().any(|a| a == expected),
            "{expected} missing from {set_cookie}"
        );
    }
    assert_eq!(reply.headers.get_all("set-cookie").iter().count(), 1);
    // The token is in the cookie only, never in the body.
    assert!(!reply.json().to_string().contains(&cookie));
    assert_eq!(reply.json()["subject"], "ops");
    let json = reply.json();
    assert_eq!(
        json["expires_at_ms"].as_i64().unwrap() - json["created_at_ms"].as_i64().unwrap(),
        28_800_000
    );

    // A custom lifetime shows in Max-Age.
    let reply = api
        .call(
            "POST",
            Some("/api/v1/sessions"),
            "/api/v1/sessions",
            &api.full(),
            Body::Json(json!({"ttl_secs": 120})),
        )
        .await;
    assert_eq!(reply.status, 201);
    let other_cookie = reply.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(other_cookie.contains("Max-Age=120"), "{other_cookie}");

    // The cookie acts as a host: it lists, reads and creates rooms, and mints invitations.
    let session = Auth::Cookie(cookie.clone());
    let reply = api
        .call(
            "GET",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &session,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["rooms"][0]["name"], "standup");
    let reply = api
        .call(
            "POST",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &session,
            Body::Json(json!({"name":"by-cookie"})),
        )
        .await;
    assert_eq!(reply.status, 201);
    let reply = api
        .call(
            "POST",
            Some("/api/v1/rooms/{name}/invitations"),
            "/api/v1/rooms/standup/invitations",
            &session,
            Body::Json(json!({"role":"speaker"})),
        )
        .await;
    assert_eq!(reply.status, 201);

    // Who may not sign in: a room-scoped token, a token short of the host grants, a session.
    let scoped = api.admin(Some("standup"), all_grants());
    let reply = api
        .call(
            "POST",
            Some("/api/v1/sessions"),
            "/api/v1/sessions",
            &Auth::Bearer(scoped),
            Body::None,
        )
        .await;
    assert_error(&reply, 403, "room_not_in_scope", "scoped token");
    assert!(reply.headers.get("set-cookie").is_none());
    let (reply, none) = api.sign_in(room_admin_grants()).await;
    assert_error(&reply, 403, "missing_grant", "no room_create");
    assert!(none.is_none());
    let reply = api
        .call(
            "POST",
            Some("/api/v1/sessions"),
            "/api/v1/sessions",
            &session,
            Body::None,
        )
        .await;
    assert_error(&reply, 403, "missing_grant", "session for a session");

    // Sign out: the cookie is cleared and refused from then on.
    let reply = api
        .call(
            "DELETE",
            Some("/api/v1/sessions/current"),
            "/api/v1/sessions/current",
            &session,
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 204);
    let cleared = reply.headers.get("set-cookie").unwrap().to_str().unwrap();
    let (pair, attributes) = cookie_attributes(cleared);
    assert_eq!(pair, "sfu_session=");
    assert!(attributes.iter().any(|a| a == "Max-Age=0"), "{cleared}");
    assert!(attributes.iter().any(|a| a == "Path=/api"), "{cleared}");
    let reply = api
        .call(
            "GET",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &session,
            Body::None,
        )
        .await;
    assert_error(&reply, 401, "invalid_session", "revoked session");
    let reply = api
        .call(
            "DELETE",
            Some("/api/v1/sessions/current"),
            "/api/v1/sessions/current",
            &session,
            Body::None,
        )
        .await;
    assert_error(&reply, 401, "invalid_session", "second sign-out");
    // The admin token it came from still works: signing out ends the session, not the key.
    let reply = api
        .call(
            "GET",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &api.full(),
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200);
}

/// Every value of every column of every table, as text.
async fn dump_every_value(db: &Db) -> Vec<(String, String, String)> {
    let mut raw = AnyConnection::connect(&db.url).await.unwrap();
    let (columns_sql, value_sql): (&str, fn(&str, &str) -> String) = match db.storage.backend() {
        Backend::Sqlite => (
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid",
            |t, c| format!("SELECT quote(\"{c}\") AS v FROM \"{t}\""),
        ),
        Backend::Postgres => (
            "SELECT CAST(table_name AS TEXT) AS t, CAST(column_name AS TEXT) AS c \
             FROM information_schema.columns WHERE table_schema = 'public' \
             ORDER BY table_name, ordinal_position",
            |t, c| format!("SELECT CAST(\"{c}\" AS TEXT) AS v FROM \"{t}\""),
        ),
    };
    let columns: Vec<(String, String)> = sqlx::query(columns_sql)
        .fetch_all(&mut raw)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get("t"), row.get("c")))
        .collect();
    let mut values = Vec::new();
    for (table, column) in columns {
        let rows = sqlx::query(AssertSqlSafe(value_sql(&table, &column)))
            .fetch_all(&mut raw)
            .await
            .unwrap();
        for row in rows {
            let value: Option<String> = row.get("v");
            values.push((table.clone(), column.clone(), value.unwrap_or_default()));
        }
    }
    raw.close().await.unwrap();
    values
}

/// The strings a thief could try from one dumped value: as is, unquoted, and a blob's hex.
fn candidate_cookies(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned(), value.to_lowercase()];
    out.push(value.trim_matches('\'').to_owned());
    let blob_hex = value
        .strip_prefix("X'")
        .and_then(|v| v.strip_suffix('\''))
        .or_else(|| value.strip_prefix("\\x"));
    if let Some(hex) = blob_hex {
        out.push(hex.to_owned());
        out.push(hex.to_lowercase());
    }
    out.retain(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_graphic() && b != b';'));
    out
}

async fn after_sign_out_no_stored_value_is_a_cookie(db: &Db) {
    let api = Api::start(&db.storage).await;
    api.create_room("standup").await;
    let (_, signed_out) = api.sign_in(HOST_SESSION_GRANTS).await;
    let signed_out = signed_out.unwrap();
    let (_, live) = api.sign_in(HOST_SESSION_GRANTS).await;
    let live = live.unwrap();
    let reply = api
        .call(
            "DELETE",
            Some("/api/v1/sessions/current"),
            "/api/v1/sessions/current",
            &Auth::Cookie(signed_out.clone()),
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 204);

    let dump = dump_every_value(db).await;
    assert!(
        dump.iter()
            .any(|(t, c, _)| t == "host_sessions" && c == "token_sha256")
    );
    let mut tried = 0;
    for (table, column, value) in &dump {
        for token in [&signed_out, &live] {
            assert!(
                !value.to_lowercase().contains(token.as_str()),
                "{table}.{column} holds a raw token"
            );
        }
        for candidate in candidate_cookies(value) {
            let reply = api
                .call(
                    "GET",
                    Some("/api/v1/rooms"),
                    "/api/v1/rooms",
                    &Auth::Cookie(candidate.clone()),
                    Body::None,
                )
                .await;
            assert_error(
                &reply,
                401,
                "invalid_session",
                &format!("{table}.{column} = {value:?}"),
            );
            tried += 1;
        }
    }
    // The signed-out cookie is refused; the live one (the control) still works, so the refusals
    // above are not a broken cookie path.
    let reply = api
        .call(
            "GET",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &Auth::Cookie(signed_out),
            Body::None,
        )
        .await;
    assert_error(&reply, 401, "invalid_session", "signed-out cookie");
    let reply = api
        .call(
            "GET",
            Some("/api/v1/rooms"),
            "/api/v1/rooms",
            &Auth::Cookie(live),
            Body::None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(tried > 20, "only {tried} stored values tried");
    eprintln!(
        "{:?}: {tried} stored values tried as cookies",
        db.storage.backend()
    );
}

/// The shell minter in `docs/admin-api.md` makes tokens this server accepts, scoped or not.
#[tokio::test]
async fn the_documented_shell_minter_makes_tokens_that_verify() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/admin-api.md"))
        .unwrap();
    let after_marker = doc.split("<!-- mint-admin-token -->").nth(1).unwrap();
    let snippet = after_marker
        .split("```bash")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let keys = ApiKeys::default();
    keys.insert("mykey", SECRET.to_vec());
    let secret = std::str::from_utf8(SECRET).unwrap();
    for room in [None, Some("standup")] {
        let script = format!(
            "{snippet}\nmint_admin_token mykey '{secret}' ops {}",
            room.unwrap_or("")
        );
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("bash and openssl are needed to check the documented minter");
        assert!(output.status.success(), "{output:?}");
        let token = String::from_utf8(output.stdout).unwrap();
        let claims = keys.verify_admin(token.trim(), unix_now()).unwrap();
        assert_eq!(claims.sub, "ops");
        assert_eq!(claims.room.as_deref(), room);
        assert!(HOST_SESSION_GRANTS.is_subset_of(&claims.grants));
    }
}
