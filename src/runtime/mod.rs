//! Shards: start-up checks, one pinned executor per CPU, the listeners the
//! caller gives (`listener`: the runtime knows no protocol), the mesh between
//! shards, the signal that stops them, and periodic work (retention).

pub mod listener;
pub mod mesh;
mod partitions;
pub mod registration;
pub mod shard;
pub mod task;
mod topics;

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::ServeConfig;
use listener::{Listener, Shards};
use mesh::{ShardMsg, MESH_QUEUE};
use shard::{Shard, CATALOG_SHARD};

/// glommio's default io_memory per shard, used when the memlock limit allows.
const IO_MEMORY_DEFAULT_BYTES: usize = 10 << 20;
/// glommio refuses to start below this memlock limit.
const MEMLOCK_MIN_BYTES: u64 = 512 << 10;
/// glommio registers io_memory with three rings per shard.
const RINGS_PER_SHARD: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("locked-memory limit (RLIMIT_MEMLOCK) is {limit_bytes} bytes; ringmq needs at least {needed_bytes}: raise it (ulimit -l, LimitMEMLOCK= in systemd)")]
    Memlock { limit_bytes: u64, needed_bytes: u64 },
    #[error("cannot start shard: {0}")]
    Executor(String),
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: SocketAddr, message: String },
    #[error("cannot open the logs: {0}")]
    Open(String),
    #[error("{0}\nringmq: run `ringmq tune check` for the full list, tuning/README.md for fixes")]
    Host(String),
}

/// Locked-memory budget per shard: glommio's default when the limit (or root)
/// allows, else what fits the limit over all shards' rings.
pub fn io_memory_per_shard(shards: usize) -> Result<(usize, String), StartError> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    let limit = if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0 { lim.rlim_cur } else { 0 };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if limit == libc::RLIM_INFINITY || root {
        let why = if root { "root: memlock limit not enforced" } else { "memlock unlimited" };
        return Ok((IO_MEMORY_DEFAULT_BYTES, why.to_string()));
    }
    if limit < MEMLOCK_MIN_BYTES {
        return Err(StartError::Memlock { limit_bytes: limit, needed_bytes: MEMLOCK_MIN_BYTES });
    }
    // A tenth is left for what else the process locks (ring memory on older kernels).
    let per_shard = (limit / 10 * 9 / (RINGS_PER_SHARD * shards as u64)) as usize / 4096 * 4096;
    let io_memory = per_shard.min(IO_MEMORY_DEFAULT_BYTES);
    Ok((io_memory, format!("memlock limit {limit} bytes / ({RINGS_PER_SHARD} rings x {shards} shards)")))
}

/// Fails unless the data dir exists (or can be made), is writable, and
/// supports O_DIRECT.
pub fn check_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |message: String| StartError::DataDir { path: dir.display().to_string(), message };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let probe = dir.join(".ringmq-probe");
    let result = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(fail("its filesystem does not support O_DIRECT (tmpfs?); put it on ext4 or XFS".into()))
        }
        Err(e) => Err(fail(format!("cannot write in it: {e}"))),
    }
}

/// Runs the broker until SIGTERM/SIGINT: one pinned executor per CPU in
/// `config.cpus`, accepting on `listeners`. The first listener is the
/// broker's client listener: every shard accepts on it, its address is
/// advertised to clients (unless `config.advertise`) and printed in the
/// ready line. Blocks the calling thread.
pub fn serve(config: ServeConfig, mut listeners: Vec<Listener>, services: Vec<Service>) -> Result<(), StartError> {
    let services = Arc::new(services);
    assert!(
        listeners.first().is_some_and(|l| l.shards == Shards::Every),
        "the first listener is the client listener, on every shard"
    );
    check_data_dir(&config.data_dir)?;
    let cpus = config.cpus.clone();
    let shards = cpus.len();
    assert!(shards > 0, "config validation guarantees at least one CPU");
    check_host(&config, shards)?;
    let (io_memory, why) = io_memory_per_shard(shards)?;
    tracing::info!(shards, ?cpus, io_memory_bytes_per_shard = io_memory, sizing = %why, "starting shards");

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| StartError::Executor(format!("signal handler: {e}")))?;
    }
    // With port 0, hold the chosen port until every shard listens on it.
    let port_holds = reserve_ports(&mut listeners)?;
    let start = ShardStart {
        config,
        listeners,
        services,
        io_memory,
        stop,
        mesh: MeshBuilder::<ShardMsg, Full>::full(shards, MESH_QUEUE),
        gate: Arc::new(StartGate::new(shards)),
    };
    let handles = start.spawn_all(&cpus)?;
    // Every shard listens (or one failed): the reservations can go.
    start.gate.wait_blocking(Stage::Listening);
    drop(port_holds);
    let mut first_error = None;
    for handle in handles {
        let result = handle.join().map_err(|_| StartError::Executor("a shard thread panicked".into())).and_then(|r| r);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The host checks that would make the broker fail later, each explained on
/// one line, before anything starts.
fn check_host(config: &ServeConfig, shards: usize) -> Result<(), StartError> {
    let findings = crate::tune::check(&crate::tune::CheckOptions { data_dir: config.data_dir.clone(), shards });
    let fatal: Vec<String> = findings
        .iter()
        .filter(|f| f.status == crate::tune::Status::Fatal)
        .map(|f| format!("{}: {} (needed: {})", f.setting, f.current, f.recommended))
        .collect();
    if fatal.is_empty() {
        Ok(())
    } else {
        Err(StartError::Host(fatal.join("\nringmq: ")))
    }
}

/// What every shard thread starts from.
struct ShardStart {
    config: ServeConfig,
    listeners: Vec<Listener>,
    services: Arc<Vec<Service>>,
    io_memory: usize,
    stop: Arc<AtomicBool>,
    mesh: MeshBuilder<ShardMsg, Full>,
    gate: Arc<StartGate>,
}

type ShardThread = std::thread::JoinHandle<Result<(), StartError>>;

impl ShardStart {
    /// One thread per CPU, each running its shard's executor.
    fn spawn_all(&self, cpus: &[usize]) -> Result<Vec<ShardThread>, StartError> {
        let mut handles = Vec::with_capacity(cpus.len());
        for (id, &cpu) in cpus.iter().enumerate() {
            let (config, wiring) = (self.config.clone(), (self.listeners.clone(), self.services.clone()));
            let (stop, mesh, gate, io_memory) =
                (self.stop.clone(), self.mesh.clone(), self.gate.clone(), self.io_memory);
            let name = format!("ringmq-shard-{id}");
            // The executor is made inside the shard's own thread so that a
            // failure to create it (io_uring, memlock) is an error this thread
            // reports and the start gate hears of, not a panic in glommio's spawn.
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                        .name(&name)
                        .io_memory(io_memory)
                        .spin_before_park(config.spin_before_park)
                        .make();
                    let result = match executor {
                        Ok(ex) => ex.run(run_shard(id, cpu, config, wiring, stop, mesh, gate.clone())),
                        Err(e) => Err(StartError::Executor(format!("shard {id} on CPU {cpu}: {e}"))),
                    };
                    if result.is_err() {
                        gate.fail();
                    }
                    result
                })
                .map_err(|e| StartError::Executor(e.to_string()))?;
            handles.push(handle);
        }
        Ok(handles)
    }
}

/// Reserves the port of every listener all shards accept on, and writes the
/// port chosen back into the listener when it asked for port 0.
fn reserve_ports(listeners: &mut [Listener]) -> Result<Vec<socket2::Socket>, StartError> {
    let mut holds = Vec::new();
    for l in listeners.iter_mut().filter(|l| l.shards == Shards::Every) {
        let hold = reserve_port(l.addr)?;
        l.addr = hold
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| StartError::Listen { addr: l.addr, message: "no local address".into() })?;
        holds.push(hold);
    }
    Ok(holds)
}

/// Binds (without listening) a SO_REUSEPORT socket on `addr`, which picks the
/// port when it is 0 and keeps it ours until the shards listen on it.
fn reserve_port(addr: SocketAddr) -> Result<socket2::Socket, StartError> {
    use socket2::{Domain, Socket, Type};
    let fail = |e: std::io::Error| StartError::Listen { addr, message: e.to_string() };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    Ok(socket)
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Opened = 0,
    Joined = 1,
    Listening = 2,
}

/// Start-up rendezvous of the shards: each stage is passed when every shard
/// reached it; a failed shard releases the others, which then stop.
struct StartGate {
    shards: usize,
    reached: [AtomicUsize; 3],
    failed: AtomicBool,
    /// Mesh peer index of each shard, published after joining.
    peer_of: Vec<AtomicUsize>,
}

impl StartGate {
    fn new(shards: usize) -> StartGate {
        StartGate {
            shards,
            reached: [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)],
            failed: AtomicBool::new(false),
            peer_of: (0..shards).map(|_| AtomicUsize::new(usize::MAX)).collect(),
        }
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    fn passed(&self, stage: Stage) -> Option<bool> {
        if self.failed.load(Ordering::SeqCst) {
            return Some(false);
        }
        (self.reached[stage as usize].load(Ordering::SeqCst) >= self.shards).then_some(true)
    }

    /// Marks this shard at `stage` and waits for the others; false if one failed.
    async fn arrive(&self, stage: Stage) -> bool {
        self.reached[stage as usize].fetch_add(1, Ordering::SeqCst);
        loop {
            if let Some(ok) = self.passed(stage) {
                return ok;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }

    fn wait_blocking(&self, stage: Stage) {
        while self.passed(stage).is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// What a shard serves: its listeners and the services opened before them.
type Wiring = (Vec<Listener>, Arc<Vec<Service>>);

async fn run_shard(
    id: usize,
    cpu: usize,
    config: ServeConfig,
    (listeners, services): Wiring,
    stop: Arc<AtomicBool>,
    mesh: MeshBuilder<ShardMsg, Full>,
    gate: Arc<StartGate>,
) -> Result<(), StartError> {
    let count = config.cpus.len();
    let retention_every = config.retention_check;
    let registered = registration::succeeded_on_this_thread();
    tracing::info!(
        shard = id,
        cpu,
        buffer_registration = if registered { "ok" } else { "failed (unregistered buffers are used)" },
        "shard started"
    );
    let Some(shard) = open_and_join(id, cpu, config, mesh, &gate).await? else {
        return Ok(());
    };
    for service in services.iter() {
        if let Err(e) = (service.open)(shard.clone()).await {
            gate.fail();
            return Err(StartError::Open(format!("{}: {e}", service.name)));
        }
    }
    let bound = listener::bind(id, &listeners)?;
    let client = bound.first().and_then(Option::as_ref).map(|b| b.addr).unwrap_or(listeners[0].addr);
    *shard.advertised.borrow_mut() =
        shard.config.advertise.clone().unwrap_or_else(|| (client.ip().to_string(), client.port()));
    if !gate.arrive(Stage::Listening).await {
        return Ok(());
    }
    spawn_retention(shard.clone(), retention_every);
    if id == CATALOG_SHARD {
        let mut ready = format!("ringmq ready listen={client}");
        for (l, b) in listeners.iter().zip(&bound).skip(1) {
            if let (Some(name), Some(b)) = (l.ready_name, b) {
                ready.push_str(&format!(" {name}={}", b.addr));
            }
        }
        println!("{ready}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(listen = %client, shards = count, "ringmq ready");
    }

    let stop_signal = async move {
        while !stop.load(Ordering::Relaxed) {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
    };
    let accepting = listener::accept_all(shard.clone(), bound.into_iter().flatten().collect());
    futures_lite::future::or(accepting, stop_signal).await;
    tracing::info!(shard = id, "stopping: committing queued appends and closing logs");
    for service in services.iter().rev() {
        (service.close)().await;
    }
    shard.shutdown().await;
    tracing::info!(shard = id, "stopped");
    Ok(())
}

/// Per-shard state a protocol keeps outside `Shard` (the AMQP broker's
/// queues): opened on every shard once the mesh is joined, before any
/// listener accepts; closed at shutdown, before the shard's own logs.
#[derive(Clone)]
pub struct Service {
    pub name: &'static str,
    pub open: ServiceOpen,
    pub close: ServiceClose,
}

/// Opens a service on a shard; `Err` stops the start with its reason.
pub type ServiceOpen = Arc<dyn Fn(Rc<Shard>) -> LocalBoxFuture<'static, Result<(), String>> + Send + Sync>;
/// Closes a service on the shard calling it.
pub type ServiceClose = Arc<dyn Fn() -> LocalBoxFuture<'static, ()> + Send + Sync>;

/// Opens this shard's logs, then joins the mesh, each step once every shard
/// passed the one before. None when another shard failed (this one stops).
async fn open_and_join(
    id: usize,
    cpu: usize,
    config: ServeConfig,
    mesh: MeshBuilder<ShardMsg, Full>,
    gate: &StartGate,
) -> Result<Option<Rc<Shard>>, StartError> {
    let count = config.cpus.len();
    let opened = Shard::open(id, count, cpu, config).await.map_err(|e| StartError::Open(e.to_string()));
    let shard = match opened {
        Ok(s) => s,
        Err(e) => {
            gate.fail();
            return Err(e);
        }
    };
    if !gate.arrive(Stage::Opened).await {
        return Ok(None);
    }
    let (senders, receivers) =
        mesh.join().await.map_err(|_| StartError::Executor("joining the shard mesh failed".into()))?;
    gate.peer_of[id].store(senders.peer_id(), Ordering::SeqCst);
    if !gate.arrive(Stage::Joined).await {
        return Ok(None);
    }
    let peer_of = gate.peer_of.iter().map(|p| p.load(Ordering::SeqCst)).collect();
    shard.attach_mesh(senders, receivers, peer_of);
    Ok(Some(shard))
}

/// Retention, on a timer, for this shard's partitions.
fn spawn_retention(shard: Rc<Shard>, every: Duration) {
    glommio::spawn_local(async move {
        while !shard.stopping.get() {
            glommio::timer::sleep(every).await;
            for log in shard.logs() {
                if let Err(e) = log.enforce_retention().await {
                    tracing::warn!(topic = %log.topic, partition = log.partition, error = %e, "retention failed");
                }
            }
        }
    })
    .detach();
}
