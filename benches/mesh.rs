//! The added latency of a cross-shard hop: a request sent over glommio's
//! channel mesh to a shard pinned on another CPU and answered over the mesh
//! (the mechanism `Shard::ask` uses), against a oneshot answered by a task on
//! the same shard. Needs 2 CPUs.

use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorBuilder, Placement};

#[derive(Debug)]
enum Msg {
    Ping(u64),
    Pong(u64),
    Stop,
}

/// Round trips per sample and samples: the figures are medians over samples.
const TRIPS: usize = 20_000;
const SAMPLES: usize = 15;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("mesh_round_trip: bench");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, as a test: one quick pass (the full run takes
    // minutes on a busy machine), as criterion's benches do.
    if !std::env::args().any(|a| a == "--bench") {
        run(200, 1);
        return;
    }
    run(TRIPS, SAMPLES);
}

/// How long an idle shard spins before it sleeps (`RINGMQ_SPIN_US`, as the broker's `--spin-before-park-us`).
fn spin() -> Duration {
    Duration::from_micros(std::env::var("RINGMQ_SPIN_US").ok().and_then(|s| s.parse().ok()).unwrap_or(0))
}

fn run(trips: usize, samples: usize) {
    let mesh = MeshBuilder::<Msg, Full>::full(2, 1024);
    let server_mesh = mesh.clone();
    let server = LocalExecutorBuilder::new(Placement::Fixed(1))
        .name("mesh-echo")
        .spin_before_park(spin())
        .spawn(move || async move {
            let (tx, rx) = server_mesh.join().await.expect("join");
            // Mesh peer ids follow executor ids, not spawn order.
            let client_peer = 1 - tx.peer_id();
            while let Ok(Some(msg)) = rx.recv_from(client_peer).await {
                match msg {
                    Msg::Ping(v) => {
                        let _ = tx.send_to(client_peer, Msg::Pong(v + 1)).await;
                    }
                    Msg::Pong(_) => {}
                    Msg::Stop => break,
                }
            }
        })
        .expect("server shard");
    let client = LocalExecutorBuilder::new(Placement::Fixed(0))
        .name("mesh-client")
        .spin_before_park(spin())
        .spawn(move || async move {
            let (tx, rx) = mesh.join().await.expect("join");
            let server_peer = 1 - tx.peer_id();
            let mut remote_ns = Vec::new();
            let mut local_ns = Vec::new();
            for _ in 0..samples {
                let start = Instant::now();
                for i in 0..trips as u64 {
                    tx.send_to(server_peer, Msg::Ping(i)).await.expect("send");
                    match rx.recv_from(server_peer).await {
                        Ok(Some(Msg::Pong(v))) => assert_eq!(v, i + 1),
                        _ => panic!("no pong"),
                    }
                }
                remote_ns.push(start.elapsed().as_nanos() as f64 / trips as f64);
                let start = Instant::now();
                for i in 0..trips as u64 {
                    // The same oneshot round trip, answered on this shard.
                    let (reply, answer) = oneshot::channel();
                    glommio::spawn_local(async move {
                        let _ = reply.send(i + 1);
                    })
                    .detach();
                    assert_eq!(answer.await.expect("answer"), i + 1);
                }
                local_ns.push(start.elapsed().as_nanos() as f64 / trips as f64);
            }
            let _ = tx.send_to(server_peer, Msg::Stop).await;
            (remote_ns, local_ns)
        })
        .expect("client shard");
    let (mut remote, mut local) = client.join().expect("client");
    server.join().expect("server");
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (rm, rlo, rhi) = stats(&mut remote);
    let (lm, llo, lhi) = stats(&mut local);
    println!(
        "mesh_round_trip/remote  median {:.2} us  (min {:.2}, max {:.2}) over {samples} x {trips}",
        rm / 1e3,
        rlo / 1e3,
        rhi / 1e3
    );
    println!("mesh_round_trip/local   median {:.2} us  (min {:.2}, max {:.2})", lm / 1e3, llo / 1e3, lhi / 1e3);
    println!("mesh_round_trip/added   median {:.2} us per cross-shard hop", (rm - lm) / 1e3);
}
