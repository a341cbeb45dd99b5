//! Embedding: a meeting server inside your own program.
//!
//! Starts an `sfu-core` worker (one thread, one UDP port), puts the `signaling` service in
//! front of it with your own API key, mints an access token the way your application would,
//! and serves the example web client. Run it with
//!
//! ```sh
//! cargo run -p sfu-examples --example embedded_server
//! ```
//!
//! then open the printed address and join with the printed token (or use `/?room=demo` and the
//! development page). Stop with Ctrl-C: every connected client is told before the server exits.

use std::sync::Arc;
use std::time::Duration;

use sfu_core::WorkerConfig;
use sfu_core::driver::WorkerHandle;
use signaling::access_token::Grants;
use signaling::server::{SignalingConfig, SignalingServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The media plane: every peer of this worker shares one UDP port.
    let (worker, events) = WorkerHandle::spawn("127.0.0.1:0".parse()?, WorkerConfig::default())?;
    println!("media on udp://{}", worker.local_addr());

    // The control plane, with your own API key (rotate by adding the new key before removing
    // the old one) and development tokens on for the example page.
    let mut config = SignalingConfig::default();
    config
        .keys
        .insert("my-app", b"replace me with 32 random bytes!".to_vec());
    config.dev_key = Some("my-app".into());
    config.web_root = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/web").into());

    // What your application does when a user opens a meeting: mint a short-lived token.
    let token = config.keys.mint(
        "my-app",
        "alice",
        "Alice",
        "demo",
        // The first to join opens the room (it is not stored beforehand).
        Grants {
            room_create: true,
            ..Grants::participant()
        },
        Duration::from_secs(600),
    )?;
    println!("a token for alice in room demo: {token}");

    let server = SignalingServer::new(config, Arc::new(worker), events);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("open http://{}", listener.local_addr()?);
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
