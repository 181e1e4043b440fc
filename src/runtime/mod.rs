//! Shards: start-up checks, the pinned executor(s), the listener, the signal
//! that stops them, and periodic work (retention).

pub mod shard;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::ServeConfig;
use shard::Shard;

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
    let per_shard = (limit / (RINGS_PER_SHARD * shards as u64)) as usize / 4096 * 4096;
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
    let result = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(&probe);
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(fail("its filesystem does not support O_DIRECT (tmpfs?); put it on ext4 or XFS".into())),
        Err(e) => Err(fail(format!("cannot write in it: {e}"))),
    }
}

/// Runs the broker until SIGTERM/SIGINT. Blocks the calling thread.
pub fn serve(config: ServeConfig) -> Result<(), StartError> {
    check_data_dir(&config.data_dir)?;
    let shards = config.cores;
    let (io_memory, why) = io_memory_per_shard(shards)?;
    let cpus: Vec<usize> = (0..shards).collect();
    tracing::info!(shards, ?cpus, io_memory_bytes = io_memory, sizing = %why, "starting shards");

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| StartError::Executor(format!("signal handler: {e}")))?;
    }

    let shard_stop = stop.clone();
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpus[0]))
        .name("ringmq-shard-0")
        .io_memory(io_memory)
        .spawn(move || async move { run_shard(0, shards, config, shard_stop).await })
        .map_err(|e| StartError::Executor(e.to_string()))?;
    handle.join().map_err(|e| StartError::Executor(e.to_string()))?
}

async fn run_shard(id: usize, count: usize, config: ServeConfig, stop: Arc<AtomicBool>) -> Result<(), StartError> {
    let started = Instant::now();
    let listen = config.listen;
    let metrics_addr = config.metrics;
    let retention_every = config.retention_check;
    let shard = Shard::open(id, count, config).await.map_err(|e| StartError::Open(e.to_string()))?;
    let listener = glommio::net::TcpListener::bind(listen).map_err(|e| StartError::Listen { addr: listen, message: e.to_string() })?;
    let bound = listener.local_addr().map_err(|e| StartError::Listen { addr: listen, message: e.to_string() })?;
    if shard.config.advertise.is_none() {
        *shard.advertised.borrow_mut() = (bound.ip().to_string(), bound.port());
    } else if let Some(a) = &shard.config.advertise {
        *shard.advertised.borrow_mut() = a.clone();
    }
    if let Some(addr) = metrics_addr {
        let bound_metrics = crate::net::metrics_http::start(shard.clone(), addr, started).map_err(|e| StartError::Listen { addr, message: e.to_string() })?;
        tracing::info!(metrics = %bound_metrics, "metrics endpoint listening");
    }

    // Retention, on a timer.
    let retention_shard = shard.clone();
    glommio::spawn_local(async move {
        while !retention_shard.stopping.get() {
            glommio::timer::sleep(retention_every).await;
            for log in retention_shard.logs() {
                if let Err(e) = log.enforce_retention().await {
                    tracing::warn!(topic = %log.topic, partition = log.partition, error = %e, "retention failed");
                }
            }
        }
    })
    .detach();

    println!("ringmq ready listen={bound}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tracing::info!(listen = %bound, "ringmq ready");

    let stop_signal = {
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            None
        }
    };
    let accept_loop = {
        let shard = shard.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        glommio::spawn_local(crate::net::serve_connection(shard.clone(), stream)).detach();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            #[allow(unreachable_code)]
            Some(())
        }
    };
    let _: Option<()> = futures_lite::future::or(accept_loop, stop_signal).await;
    tracing::info!("stopping: committing queued appends and closing logs");
    shard.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
