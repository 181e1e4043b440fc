//! The machine's own limits (DESIGN §7), measured with Debian's `fio` and
//! `iperf3`: O_DIRECT overwrite + fdatasync at 4 KiB, 64 KiB and 1 MiB on the
//! data filesystem, one loopback TCP stream, and the disk's latency under the
//! shape of a paced durable load (4 KiB O_DSYNC writes at a fixed total rate
//! spread over one file per partition, one write in flight per file, as a
//! broker commits each partition's messages). Written as baseline.json; a run
//! given `--baseline FILE` reports its figures as ratios to these.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::BaselineArgs;
use crate::error::Error;

/// One fio job: O_DIRECT sequential overwrite, fdatasync after every write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FioResult {
    pub block_size: String,
    pub block_bytes: u64,
    pub ops_per_s: f64,
    pub us_per_op: f64,
    pub bytes_per_s: f64,
    pub mib_per_s: f64,
    pub write_p50_us: f64,
    pub fdatasync_p50_us: f64,
    pub fdatasync_p99_us: f64,
}

/// Paced 4 KiB O_DIRECT|O_DSYNC writes through io_uring: `files` jobs, each
/// its own file with one write in flight, `rate_ops_per_s` in total. Latency
/// is fio's `lat` (submission to completion, the flush included).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PacedFioResult {
    pub files: u32,
    pub rate_ops_per_s: u32,
    pub ops_per_s: f64,
    pub lat_p50_us: f64,
    pub lat_p99_us: f64,
    pub lat_p999_us: f64,
}

/// One iperf3 TCP stream over loopback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IperfResult {
    pub seconds: u64,
    pub bits_per_s: f64,
    pub bytes_per_s: f64,
    pub gbytes_per_s: f64,
}

/// baseline.json
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub measured_at_unix_s: u64,
    pub kernel: String,
    pub cores: usize,
    pub data_dir: String,
    pub fio: Vec<FioResult>,
    /// Absent in baselines written before it was measured.
    #[serde(default)]
    pub fio_paced: Option<PacedFioResult>,
    pub loopback_tcp: IperfResult,
}

impl Baseline {
    pub fn fio(&self, block_size: &str) -> Option<&FioResult> {
        self.fio.iter().find(|f| f.block_size == block_size)
    }

    pub fn load(path: &Path) -> Result<Baseline, Error> {
        let text = std::fs::read_to_string(path).map_err(Error::file("cannot read baseline", path))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Parse { path: path.to_path_buf(), detail: format!("not a baseline.json: {e}") })
    }
}

fn tool_output(tool: &'static str, cmd: &mut Command) -> Result<String, Error> {
    let out = cmd.output().map_err(|e| Error::Tool {
        tool,
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{tool} is not installed (apt-get install -y {tool})")
        } else {
            e.to_string()
        },
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = String::from_utf8_lossy(&out.stdout);
        return Err(Error::Tool {
            tool,
            detail: format!(
                "exited with {}: {}{}",
                out.status,
                err.trim(),
                first.chars().take(400).collect::<String>()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
}

/// The first job of fio's `--output-format=json` (fio may print notes
/// before the JSON).
fn first_fio_job(json: &str) -> Result<Value, String> {
    let start = json.find('{').ok_or("no JSON in fio's output")?;
    let mut v: Value = serde_json::from_str(&json[start..]).map_err(|e| format!("fio JSON: {e}"))?;
    v.get_mut("jobs").and_then(|j| j.get_mut(0)).map(Value::take).ok_or_else(|| "fio JSON has no jobs".to_string())
}

/// Parses fio's `--output-format=json` for one job.
pub fn parse_fio(json: &str, block_size: &str, block_bytes: u64) -> Result<FioResult, String> {
    let job = &first_fio_job(json)?;
    let iops = num(job, &["write", "iops"]).ok_or("fio JSON has no write.iops")?;
    if iops <= 0.0 {
        return Err("fio measured 0 writes per second".to_string());
    }
    let pct = |section: &[&str], p: &str| -> f64 {
        let mut path: Vec<&str> = section.to_vec();
        path.push("percentile");
        path.push(p);
        num(job, &path).unwrap_or(0.0) / 1e3
    };
    Ok(FioResult {
        block_size: block_size.to_string(),
        block_bytes,
        ops_per_s: iops,
        us_per_op: 1e6 / iops,
        bytes_per_s: iops * block_bytes as f64,
        mib_per_s: iops * block_bytes as f64 / (1 << 20) as f64,
        write_p50_us: pct(&["write", "clat_ns"], "50.000000"),
        fdatasync_p50_us: pct(&["sync", "lat_ns"], "50.000000"),
        fdatasync_p99_us: pct(&["sync", "lat_ns"], "99.000000"),
    })
}

/// Parses fio's JSON for a paced run (`--group_reporting --lat_percentiles=1`).
pub fn parse_fio_paced(json: &str, files: u32, rate_ops_per_s: u32) -> Result<PacedFioResult, String> {
    let job = &first_fio_job(json)?;
    let ops_per_s = num(job, &["write", "iops"]).ok_or("fio JSON has no write.iops")?;
    let pct = |p: &str| -> Result<f64, String> {
        num(job, &["write", "lat_ns", "percentile", p])
            .map(|ns| ns / 1e3)
            .ok_or_else(|| format!("fio JSON has no write.lat_ns percentile {p}"))
    };
    Ok(PacedFioResult {
        files,
        rate_ops_per_s,
        ops_per_s,
        lat_p50_us: pct("50.000000")?,
        lat_p99_us: pct("99.000000")?,
        lat_p999_us: pct("99.900000")?,
    })
}

/// Runs fio's paced durable-write job (see [`PacedFioResult`]).
fn measure_fio_paced(dir: &Path, args: &BaselineArgs) -> Result<PacedFioResult, Error> {
    let files = args.paced_files;
    let rate = args.paced_rate;
    let per_file = rate / files;
    eprintln!(
        "baseline: fio 4k O_DIRECT|O_DSYNC io_uring, {files} files x {per_file} writes/s, {} s, on {}",
        args.fio_seconds,
        dir.display()
    );
    let pattern = format!("ringmq-baseline-{}-paced.$jobnum", std::process::id());
    let result = tool_output(
        "fio",
        Command::new("fio").args([
            "--name=paced",
            &format!("--directory={}", dir.display()),
            &format!("--filename_format={pattern}"),
            "--size=64M",
            "--bs=4k",
            "--rw=write",
            "--direct=1",
            "--sync=dsync",
            "--ioengine=io_uring",
            "--iodepth=1",
            &format!("--numjobs={files}"),
            &format!("--rate_iops={per_file}"),
            "--overwrite=1",
            &format!("--runtime={}", args.fio_seconds),
            "--time_based",
            "--group_reporting",
            "--lat_percentiles=1",
            "--percentile_list=50:99:99.9",
            "--output-format=json",
        ]),
    );
    for job in 0..files {
        let _ = std::fs::remove_file(dir.join(pattern.replace("$jobnum", &job.to_string())));
    }
    let r = parse_fio_paced(&result?, files, per_file * files).map_err(|detail| Error::Tool { tool: "fio", detail })?;
    eprintln!(
        "baseline: fio paced {:>6.0} writes/s: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us",
        r.ops_per_s, r.lat_p50_us, r.lat_p99_us, r.lat_p999_us
    );
    Ok(r)
}

/// Parses iperf3's `-J` client output.
pub fn parse_iperf(json: &str, seconds: u64) -> Result<IperfResult, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("iperf3 JSON: {e}"))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3: {err}"));
    }
    let bits = num(&v, &["end", "sum_received", "bits_per_second"])
        .ok_or("iperf3 JSON has no end.sum_received.bits_per_second")?;
    Ok(IperfResult { seconds, bits_per_s: bits, bytes_per_s: bits / 8.0, gbytes_per_s: bits / 8.0 / 1e9 })
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure_iperf(seconds: u64) -> Result<IperfResult, Error> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Tool { tool: "iperf3", detail: format!("no free port: {e}") })?;
    let server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Tool {
            tool: "iperf3",
            detail: if e.kind() == std::io::ErrorKind::NotFound {
                "iperf3 is not installed (apt-get install -y iperf3)".to_string()
            } else {
                e.to_string()
            },
        })?;
    let _server = KillOnDrop(server);
    let mut last = String::new();
    for _ in 0..30 {
        thread::sleep(Duration::from_millis(200));
        let out = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", &seconds.to_string(), "-P", "1", "-J"])
            .output()
            .map_err(|e| Error::Tool { tool: "iperf3", detail: e.to_string() })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match parse_iperf(&text, seconds) {
            Ok(r) if out.status.success() => return Ok(r),
            Ok(_) => last = format!("exited with {}", out.status),
            Err(e) => last = e,
        }
        if !last.contains("connect") && !last.contains("refused") {
            break;
        }
    }
    Err(Error::Tool { tool: "iperf3", detail: last })
}

/// Runs the measurements of `loadgen/baseline`.
pub fn measure(args: &BaselineArgs) -> Result<Baseline, Error> {
    if args.paced_files > 0 && args.paced_rate < args.paced_files {
        return Err(Error::Usage(format!(
            "--paced-rate {} is below --paced-files {}: every file needs at least one write per second",
            args.paced_rate, args.paced_files
        )));
    }
    std::fs::create_dir_all(&args.dir).map_err(Error::file("cannot create", &args.dir))?;
    let dir = std::fs::canonicalize(&args.dir).map_err(Error::file("cannot resolve", &args.dir))?;
    let file: PathBuf = dir.join(format!("ringmq-baseline-{}.fio", std::process::id()));
    let mut fio = Vec::new();
    let result = (|| {
        for (bs, bytes) in [("4k", 4096u64), ("64k", 65536), ("1m", 1 << 20)] {
            eprintln!(
                "baseline: fio {bs} O_DIRECT overwrite + fdatasync, {} s, on {}",
                args.fio_seconds,
                dir.display()
            );
            let out = tool_output(
                "fio",
                Command::new("fio").args([
                    &format!("--name=overwrite-{bs}"),
                    &format!("--filename={}", file.display()),
                    &format!("--size={}", args.fio_size),
                    &format!("--bs={bs}"),
                    "--rw=write",
                    "--direct=1",
                    "--fdatasync=1",
                    "--ioengine=psync",
                    "--overwrite=1",
                    &format!("--runtime={}", args.fio_seconds),
                    "--time_based",
                    "--output-format=json",
                ]),
            )?;
            let r = parse_fio(&out, bs, bytes).map_err(|detail| Error::Tool { tool: "fio", detail })?;
            eprintln!(
                "baseline: fio {bs:<3} {:>8.0} ops/s {:>7.1} us/op {:>7.1} MiB/s (fdatasync p50 {:.0} us, p99 {:.0} us)",
                r.ops_per_s, r.us_per_op, r.mib_per_s, r.fdatasync_p50_us, r.fdatasync_p99_us
            );
            fio.push(r);
        }
        Ok::<(), Error>(())
    })();
    let _ = std::fs::remove_file(&file);
    result?;
    let fio_paced = if args.paced_files > 0 { Some(measure_fio_paced(&dir, args)?) } else { None };
    eprintln!("baseline: iperf3 loopback, one stream, {} s", args.iperf_seconds);
    let loopback_tcp = measure_iperf(args.iperf_seconds)?;
    eprintln!("baseline: iperf3 loopback {:.2} GB/s", loopback_tcp.gbytes_per_s);
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    Ok(Baseline {
        measured_at_unix_s: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        kernel,
        cores: thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        data_dir: dir.display().to_string(),
        fio,
        fio_paced,
        loopback_tcp,
    })
}

/// `ringmq-loadgen baseline`: measures and writes the JSON.
pub fn command(args: &BaselineArgs) -> Result<(), Error> {
    let b = measure(args)?;
    let json =
        serde_json::to_string_pretty(&b).map_err(|e| Error::Parse { path: args.out.clone(), detail: e.to_string() })?;
    std::fs::write(&args.out, json + "\n").map_err(Error::file("cannot write", &args.out))?;
    println!("baseline written to {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_gives_ops_and_sync_latency() {
        let json = r#"note: something
        {"jobs":[{"write":{"iops":7000.0,"bw":28000,"clat_ns":{"percentile":{"50.000000":20000}}},
                  "sync":{"lat_ns":{"percentile":{"50.000000":90000,"99.000000":200000}}}}]}"#;
        let r = parse_fio(json, "4k", 4096).expect("parse");
        assert_eq!(r.ops_per_s, 7000.0);
        assert!((r.us_per_op - 142.857).abs() < 0.01);
        assert_eq!(r.fdatasync_p50_us, 90.0);
        assert_eq!(r.fdatasync_p99_us, 200.0);
    }

    #[test]
    fn paced_fio_json_gives_total_latency_percentiles() {
        let json = r#"{"jobs":[{"write":{"iops":1999.4,
            "clat_ns":{"percentile":{"50.000000":104960,"99.000000":387072,"99.900000":1548288}},
            "lat_ns":{"percentile":{"50.000000":128512,"99.000000":456704,"99.900000":2179072}}}}]}"#;
        let r = parse_fio_paced(json, 4, 2000).expect("parse");
        assert_eq!((r.files, r.rate_ops_per_s), (4, 2000));
        assert_eq!(r.lat_p50_us, 128.512);
        assert_eq!(r.lat_p99_us, 456.704);
        assert_eq!(r.lat_p999_us, 2179.072);
        let no_total = r#"{"jobs":[{"write":{"iops":1.0,"clat_ns":{"percentile":{"99.000000":1}}}}]}"#;
        assert!(parse_fio_paced(no_total, 4, 2000).unwrap_err().contains("lat_ns"));
    }

    #[test]
    fn baseline_written_before_paced_fio_still_loads() {
        let json = r#"{"measured_at_unix_s":1,"kernel":"6.18","cores":2,"data_dir":"/d","fio":[],
            "loopback_tcp":{"seconds":5,"bits_per_s":8.0,"bytes_per_s":1.0,"gbytes_per_s":1e-9}}"#;
        let b: Baseline = serde_json::from_str(json).expect("old baseline");
        assert!(b.fio_paced.is_none());
    }

    #[test]
    fn iperf_json_gives_bytes_per_second() {
        let r = parse_iperf(r#"{"end":{"sum_received":{"bits_per_second":21.6e9}}}"#, 5).expect("parse");
        assert!((r.gbytes_per_s - 2.7).abs() < 1e-9);
        assert!(parse_iperf(r#"{"error":"unable to connect"}"#, 5).is_err());
    }
}
