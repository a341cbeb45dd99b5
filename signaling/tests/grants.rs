//! A property test over request types × roles, on a real server over real WebSockets: whatever
//! frames a participant crafts, it gets exactly what its grants allow. In particular no frame
//! lets a guest publish beyond its role, mute or remove others, rename itself, change its
//! grants or create a room. Every refusal is a typed error and the session survives it.
//!
//! Each case: a host (room admin) opens a fresh stored room and publishes two tracks; the
//! attacker joins in one of five roles and sends a generated sequence of frames; every answer
//! is checked against a model of the role, then the room's state is checked through the
//! `RoomService` (identity, name, grants, tracks, the host's tracks unmuted, no other room).

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use signaling::access_token::{Grants, GuestRole};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Participant,
    ViewerGuest,
    SpeakerGuest,
    Admin,
    HiddenRecorder,
}

impl Role {
    fn grants(self) -> Grants {
        match self {
            Role::Participant => Grants::participant(),
            Role::ViewerGuest => GuestRole::Viewer.grants(),
            Role::SpeakerGuest => GuestRole::Speaker.grants(),
            Role::Admin => Grants {
                room_admin: true,
                ..Grants::participant()
            },
            Role::HiddenRecorder => recorder(),
        }
    }
}

#[derive(Debug, Clone)]
enum Request {
    Publish,
    MuteHostTrack(bool),
    MuteOwnTrack,
    UnpublishHostTrack,
    RemoveHost,
    Chat,
    ChatToHost,
    SetSubscriptionOfHostTrack,
    SubscribeAnswerUnasked,
    /// Frames that try to rename, regrant or move the participant.
    Crafted(usize),
}

/// Frames no grant makes valid, each with the code it must get.
fn crafted(i: usize, room: &str) -> (Value, &'static str) {
    let other_room_token = token(&format!("{room}-x"), "evil", admin());
    let cases = [
        (json!({"type":"set_name","name":"The Host"}), "unknown_type"),
        (
            json!({"type":"update_participant","identity":"host","grants":{"room_admin":true}}),
            "unknown_type",
        ),
        (
            json!({"type":"join","token":other_room_token,"protocol":1,"room":format!("{room}-x")}),
            "already_joined",
        ),
        (
            json!({"type":"join_guest","meeting_code":"bcd-fghj-kmn","invitation":"x","name":"Host","protocol":1}),
            "already_joined",
        ),
        (
            json!({"type":"create_room","room":format!("{room}-y")}),
            "unknown_type",
        ),
        (
            json!({"type":"mute","track":"TR_nope","muted":true,"identity":"host"}),
            "unknown_track",
        ),
        (json!({"type":"chat","text":42}), "bad_request"),
        (json!({"type":"remove_participant"}), "bad_request"),
    ];
    cases[i % cases.len()].clone()
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Publish),
        any::<bool>().prop_map(Request::MuteHostTrack),
        Just(Request::MuteOwnTrack),
        Just(Request::UnpublishHostTrack),
        Just(Request::RemoveHost),
        Just(Request::Chat),
        Just(Request::ChatToHost),
        Just(Request::SetSubscriptionOfHostTrack),
        Just(Request::SubscribeAnswerUnasked),
        (0usize..8).prop_map(Request::Crafted),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Participant),
        Just(Role::ViewerGuest),
        Just(Role::SpeakerGuest),
        Just(Role::Admin),
        Just(Role::HiddenRecorder),
    ]
}

/// What the model expects.
struct Model {
    grants: Grants,
    host_present: bool,
    own_tracks: bool,
}

impl Model {
    /// The answer type (`"ok"`, `"publish_answer"`) or error code a request must get.
    fn expect(&mut self, r: &Request) -> &'static str {
        let g = self.grants;
        match r {
            Request::Publish => {
                if g.publish && !g.hidden {
                    self.own_tracks = true;
                    "publish_answer"
                } else {
                    "permission_denied"
                }
            }
            Request::MuteHostTrack(_) => match (self.host_present, g.room_admin) {
                (false, _) => "unknown_track",
                (true, true) => "ok",
                (true, false) => "permission_denied",
            },
            Request::MuteOwnTrack => {
                if self.own_tracks {
                    "ok"
                } else {
                    "unknown_track"
                }
            }
            Request::UnpublishHostTrack => "unknown_track",
            Request::RemoveHost => match (g.room_admin, self.host_present) {
                (false, _) => "permission_denied",
                (true, true) => {
                    self.host_present = false;
                    "ok"
                }
                (true, false) => "unknown_participant",
            },
            Request::Chat => {
                if g.publish_data && !g.hidden {
                    "ok"
                } else {
                    "permission_denied"
                }
            }
            Request::ChatToHost => match (g.publish_data && !g.hidden, self.host_present) {
                (false, _) => "permission_denied",
                (true, true) => "ok",
                (true, false) => "unknown_participant",
            },
            Request::SetSubscriptionOfHostTrack => match (g.subscribe, self.host_present) {
                (false, _) => "permission_denied",
                (true, true) => "ok",
                (true, false) => "unknown_track",
            },
            // Every role here subscribes and has an offer outstanding (the host's tracks), so
            // the answer is checked as SDP, and this one is an old version.
            Request::SubscribeAnswerUnasked => "out_of_order",
            Request::Crafted(_) => unreachable!("checked by its own table"),
        }
    }
}

struct Case {
    room: String,
    host: Ws,
    host_sid: String,
    host_tracks: Vec<String>,
    attacker: Ws,
    attacker_identity: String,
    attacker_name: String,
}

async fn setup(s: &Server, n: usize, role: Role) -> Case {
    let room = format!("prop-{n}");
    let code = store_room(&s.storage, &room, 10).await;
    let (mut host, jh) = join(&s.url, &token(&room, "host", admin())).await;
    let host_sid = jh["participant"]["sid"].as_str().unwrap().to_owned();
    let host_tracks = publish(&mut host, 2).await;
    let (attacker, joined) = match role {
        Role::ViewerGuest | Role::SpeakerGuest => {
            let r = if role == Role::ViewerGuest {
                GuestRole::Viewer
            } else {
                GuestRole::Speaker
            };
            join_guest(&s.url, &code, &invitation(&room, r), "Guest").await
        }
        _ => join(&s.url, &token(&room, "attacker", role.grants())).await,
    };
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(
        joined["grants"],
        serde_json::to_value(role.grants()).unwrap()
    );
    Case {
        room,
        host,
        host_sid,
        host_tracks,
        attacker,
        attacker_identity: joined["participant"]["identity"]
            .as_str()
            .unwrap()
            .to_owned(),
        attacker_name: joined["participant"]["name"].as_str().unwrap().to_owned(),
    }
}

async fn run_case(s: &Server, n: usize, role: Role, requests: &[Request]) {
    let mut c = setup(s, n, role).await;
    let mut model = Model {
        grants: role.grants(),
        host_present: true,
        own_tracks: false,
    };
    let mut own_track: Option<String> = None;
    for (i, r) in requests.iter().enumerate() {
        let id = 100 + i as u64;
        let host_track = &c.host_tracks[i % 2];
        let (frame, expected) = match r {
            Request::Publish => (
                json!({"type":"publish","sdp":OFFER,"tracks":[{"mid":"0","source":"microphone"}]}),
                model.expect(r),
            ),
            Request::MuteHostTrack(m) => (
                json!({"type":"mute","track":host_track,"muted":m}),
                model.expect(r),
            ),
            Request::MuteOwnTrack => (
                json!({"type":"mute","track":own_track.clone().unwrap_or_else(|| "TR_none".into()),"muted":true}),
                model.expect(r),
            ),
            Request::UnpublishHostTrack => (
                json!({"type":"unpublish","track":host_track}),
                model.expect(r),
            ),
            Request::RemoveHost => (
                json!({"type":"remove_participant","participant":c.host_sid}),
                model.expect(r),
            ),
            Request::Chat => (json!({"type":"chat","text":"hi"}), model.expect(r)),
            Request::ChatToHost => (
                json!({"type":"chat","text":"hi host","to":c.host_sid}),
                model.expect(r),
            ),
            Request::SetSubscriptionOfHostTrack => (
                json!({"type":"set_subscription","track":host_track,"paused":false}),
                model.expect(r),
            ),
            Request::SubscribeAnswerUnasked => (
                json!({"type":"subscribe_answer","sdp":"v=0","version":999}),
                model.expect(r),
            ),
            Request::Crafted(k) => crafted(*k, &c.room),
        };
        let mut frame = frame;
        frame["id"] = json!(id);
        send(&mut c.attacker, frame.clone()).await;
        let a = answer(&mut c.attacker, id).await;
        let got = if a["type"] == "error" {
            a["code"].as_str().unwrap_or("?").to_owned()
        } else {
            a["type"].as_str().unwrap_or("?").to_owned()
        };
        assert_eq!(got, expected, "{role:?} sent {frame} and got {a}");
        if a["type"] == "publish_answer" && own_track.is_none() {
            own_track = a["tracks"][0]["id"].as_str().map(str::to_owned);
        }
    }
    // The session is alive after every refusal.
    send(&mut c.attacker, json!({"type":"ping","id":1})).await;
    assert_eq!(answer(&mut c.attacker, 1).await["type"], "pong");
    // The room's state: nothing beyond the role.
    let people = s.rooms.list_participants(&c.room).await.unwrap();
    let me = people
        .iter()
        .find(|p| p.identity == c.attacker_identity)
        .expect("still in the room");
    assert_eq!(me.name, c.attacker_name, "renamed");
    assert_eq!(me.grants, role.grants(), "grants changed");
    if !role.grants().publish || role.grants().hidden {
        assert!(me.tracks.is_empty(), "{role:?} published");
    }
    let host = people.iter().find(|p| p.identity == "host");
    if model.host_present {
        let host = host.expect("the host is still there");
        if !role.grants().room_admin {
            assert!(
                host.tracks.iter().all(|t| !t.muted),
                "{role:?} muted the host"
            );
            assert_eq!(host.tracks.len(), 2);
        }
    } else {
        assert!(host.is_none() && role.grants().room_admin);
    }
    let rooms: Vec<String> = s
        .rooms
        .list_rooms()
        .await
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(
        rooms
            .iter()
            .all(|r| !r.starts_with(&format!("{}-", c.room))),
        "a room was created: {rooms:?}"
    );
    assert!(
        s.storage
            .room_by_name(&format!("{}-x", c.room))
            .await
            .is_err()
    );
    // Hidden participants were never announced to the host.
    if role.grants().hidden {
        send(&mut c.host, json!({"type":"ping","id":7})).await;
        loop {
            let v = recv(&mut c.host).await;
            let Some(v) = v else { break };
            assert_ne!(v["type"], "participant_joined", "hidden announced: {v}");
            if v["id"] == 7 {
                break;
            }
        }
    }
    let _ = s.rooms.close_room(&c.room, "case over").await;
}

#[test]
fn no_crafted_frame_goes_beyond_the_grants() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(start());
    let cases = std::env::var("GRANTS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(
            &(role(), proptest::collection::vec(request(), 1..10)),
            |(role, requests)| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                runtime.block_on(run_case(&server, n, role, &requests));
                Ok(())
            },
        )
        .unwrap();
}
