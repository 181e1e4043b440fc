//! `ringmq tune check`: a read-only look at the host, item by item against
//! tuning/README.md. Everything is read from /proc and /sys without root. The
//! only actions are two probes like those ringmq makes at start: an
//! `io_uring_setup` (the ring is closed at once) and one 4 KiB
//! O_DIRECT|O_DSYNC write to a probe file in the data dir (the dir is created
//! if missing; the probe file is removed).
//!
//! Fatal (ringmq will not run, or not durably): io_uring unavailable; O_DIRECT
//! rejected, the data dir unwritable, or the data dir in memory (tmpfs accepts
//! O_DIRECT since Linux 6.6 but keeps the data in RAM); RLIMIT_MEMLOCK below
//! glommio's 512 KiB floor. glommio compares the limit itself with that floor,
//! for root too: CAP_IPC_LOCK only spares registered buffers from being
//! charged. Everything else is Warn at most; what cannot be read is Warn with
//! a current value of "unknown (...)". Nothing here panics.
//!
//! The resource limits reported are those of the process running the check:
//! run it under the service's limits (ringmq.service runs it as
//! ExecStartPre=) for those rows to mean anything.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What to check against: the broker's data dir and its number of shards.
pub struct CheckOptions {
    pub data_dir: PathBuf,
    pub shards: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Warn,
    Fatal,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fatal => "FATAL",
        })
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub setting: String,
    pub current: String,
    pub recommended: String,
    pub status: Status,
}

fn finding(
    setting: impl Into<String>,
    current: impl Into<String>,
    recommended: impl Into<String>,
    status: Status,
) -> Finding {
    Finding { setting: setting.into(), current: current.into(), recommended: recommended.into(), status }
}

fn unknown(setting: impl Into<String>, why: impl fmt::Display, recommended: impl Into<String>) -> Finding {
    finding(setting, format!("unknown ({why})"), recommended, Status::Warn)
}

/// glommio refuses to start below this RLIMIT_MEMLOCK (soft), for any user.
const MEMLOCK_MIN_BYTES: u64 = 512 << 10;
/// glommio's default io_memory per shard; ringmq's cap.
const IO_MEMORY_DEFAULT_BYTES: u64 = 10 << 20;
/// glommio registers io_memory with three rings per shard.
const RINGS_PER_SHARD: u64 = 3;
/// glommio listens with this backlog on each shard's socket.
const LISTEN_BACKLOG: u64 = 1024;
/// C-states exiting this slowly or slower cost a shard's wake-up dearly
/// (`cpupower idle-set -D 20` disables exactly those).
const CSTATE_LATENCY_LIMIT_US: u64 = 20;
/// CAP_IPC_LOCK's bit in /proc/self/status CapEff.
const CAP_IPC_LOCK_BIT: u32 = 14;

/// Runs every check on this host. Never panics; see the module doc.
pub fn check(opts: &CheckOptions) -> Vec<Finding> {
    check_on(&Host::real(), opts)
}

/// 1 when any finding is fatal (ringmq would not start or not run), else 0.
pub fn exit_code(findings: &[Finding]) -> i32 {
    if findings.iter().any(|f| f.status == Status::Fatal) {
        1
    } else {
        0
    }
}

const COLUMN_CAPS: [usize; 3] = [30, 36, 46];
const HEADERS: [&str; 4] = ["SETTING", "CURRENT", "RECOMMENDED", "STATUS"];

/// Prints the findings as an aligned table (long cells wrap inside their
/// column) followed by a one-line count by status.
pub fn print_table(findings: &[Finding], out: &mut impl Write) -> io::Result<()> {
    let cells = |f: &Finding| [f.setting.clone(), f.current.clone(), f.recommended.clone()];
    let mut widths = [0usize; 3];
    for (i, w) in widths.iter_mut().enumerate() {
        *w = HEADERS[i].len();
    }
    for f in findings {
        for (i, c) in cells(f).iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count().min(COLUMN_CAPS[i]));
        }
    }
    let line = |out: &mut dyn Write, parts: [&str; 4]| -> io::Result<()> {
        let text = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            parts[0],
            parts[1],
            parts[2],
            parts[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        writeln!(out, "{}", text.trim_end())
    };
    line(out, HEADERS)?;
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).chain(std::iter::once("-".repeat(6))).collect();
    line(out, [&rule[0], &rule[1], &rule[2], &rule[3]])?;
    for f in findings {
        let wrapped: Vec<Vec<String>> = cells(f).iter().enumerate().map(|(i, c)| wrap(c, widths[i])).collect();
        let rows = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let status = f.status.to_string();
        for r in 0..rows {
            let get = |i: usize| wrapped[i].get(r).map(String::as_str).unwrap_or("");
            line(out, [get(0), get(1), get(2), if r == 0 { &status } else { "" }])?;
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    writeln!(
        out,
        "{} checks: {} ok, {} warn, {} fatal",
        findings.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fatal)
    )
}

/// Splits `text` into lines of at most `width` characters, at spaces where it
/// can, mid-word where a word alone is too long.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        let cur_len = cur.chars().count();
        if cur_len > 0 && cur_len + 1 + word.len() <= width {
            cur.push(' ');
            cur.extend(word.iter());
            continue;
        }
        if cur_len > 0 {
            lines.push(std::mem::take(&mut cur));
        }
        while word.len() > width {
            lines.push(word.drain(..width).collect());
        }
        cur = word.into_iter().collect();
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

// ---------------------------------------------------------------------------
// Where /proc and /sys are (the real ones, or a fake tree in tests).

struct Host {
    proc_root: PathBuf,
    sys_root: PathBuf,
}

impl Host {
    fn real() -> Host {
        Host { proc_root: "/proc".into(), sys_root: "/sys".into() }
    }

    fn proc_path(&self, rel: &str) -> PathBuf {
        self.proc_root.join(rel)
    }

    fn sys_path(&self, rel: &str) -> PathBuf {
        self.sys_root.join(rel)
    }

    fn read_proc(&self, rel: &str) -> io::Result<String> {
        read_trimmed(&self.proc_path(rel))
    }

    fn read_sys(&self, rel: &str) -> io::Result<String> {
        read_trimmed(&self.sys_path(rel))
    }

    fn sysctl(&self, name: &str) -> io::Result<String> {
        self.read_proc(&format!("sys/{}", name.replace('.', "/")))
    }

    fn sysctl_u64(&self, name: &str) -> io::Result<u64> {
        let s = self.sysctl(name)?;
        s.parse::<u64>().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("not a number: {s:?}")))
    }
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

fn short_err(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not found".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn check_on(host: &Host, opts: &CheckOptions) -> Vec<Finding> {
    let shards = opts.shards.max(1);
    let mut out = Vec::new();
    out.extend(io_uring_findings(host));
    // The probe creates the data dir, so that it can be resolved below.
    let data_dir = absolute(&opts.data_dir);
    let direct = probe_o_direct(&data_dir);
    let place = DataDirPlace::resolve(host, &data_dir);
    out.push(o_direct_finding(&data_dir, &direct, place.mount.as_ref()));
    out.push(memlock_finding(shards));
    out.push(nofile_finding());
    out.extend(filesystem_findings(&data_dir, &place));
    out.extend(block_findings(host, &place));
    let cpus = CpuFacts::read(host);
    out.extend(isolation_findings(&cpus, shards));
    out.push(irq_finding(host, &cpus));
    out.push(governor_finding(host));
    out.push(cstate_finding(host));
    out.extend(thp_findings(host));
    out.extend(vm_findings(host));
    out.extend(net_findings(host));
    out.push(clocksource_finding(host));
    out
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

// ---------------------------------------------------------------------------
// io_uring

fn io_uring_findings(host: &Host) -> Vec<Finding> {
    let probe = probe_io_uring();
    let probe_row = match &probe {
        Ok(()) => finding("io_uring_setup()", "works (probe ring created and closed)", "works", Status::Ok),
        Err(e) => {
            finding("io_uring_setup()", io_uring_error_text(e), "works: ringmq runs only on io_uring", Status::Fatal)
        }
    };
    let rec = "0 (io_uring for all); 1 only with the ringmq user in kernel.io_uring_group";
    let disabled_row = match host.sysctl("kernel.io_uring_disabled") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            finding("kernel.io_uring_disabled", "absent (kernel before 6.6: not restricted)", rec, Status::Ok)
        }
        Err(e) => unknown("kernel.io_uring_disabled", short_err(&e), rec),
        Ok(v) => match v.as_str() {
            "0" => finding("kernel.io_uring_disabled", "0", rec, Status::Ok),
            "1" => {
                let group = host.sysctl("kernel.io_uring_group").unwrap_or_else(|_| "?".into());
                let (current, status) = if probe.is_ok() {
                    (format!("1: only CAP_SYS_ADMIN or group {group}; allowed for this process, make sure it is for the ringmq user"), Status::Warn)
                } else {
                    (format!("1: only CAP_SYS_ADMIN or group {group}; denied to this process"), Status::Fatal)
                };
                finding("kernel.io_uring_disabled", current, rec, status)
            }
            "2" => finding("kernel.io_uring_disabled", "2: io_uring disabled for everyone", rec, Status::Fatal),
            other => finding("kernel.io_uring_disabled", format!("unknown ({other:?})"), rec, Status::Warn),
        },
    };
    vec![disabled_row, probe_row]
}

/// `struct io_uring_params`: 120 bytes, all zero asks for nothing special.
#[repr(C, align(8))]
struct IoUringParams([u8; 120]);

/// Creates a 4-entry ring and closes it.
fn probe_io_uring() -> io::Result<()> {
    let mut params = IoUringParams([0; 120]);
    // SAFETY: io_uring_setup reads and writes exactly one io_uring_params
    // (120 bytes) at the pointer we pass, which lives across the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4 as libc::c_long, &mut params as *mut IoUringParams) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is the ring we just created and own; nothing else uses it.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

fn io_uring_error_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "ENOSYS: kernel built without io_uring, or a sandbox (gVisor...) without it".into(),
        Some(libc::EPERM) => "EPERM: kernel.io_uring_disabled, or a seccomp profile (Docker >= 25 and containerd default profiles block io_uring)".into(),
        Some(libc::ENOMEM) => "ENOMEM: memlock too small for the ring (kernels before 5.12 charge rings to RLIMIT_MEMLOCK)".into(),
        _ => format!("failed: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Data dir: O_DIRECT, filesystem, mount options.

#[derive(Debug)]
enum DirectProbe {
    Ok,
    CannotCreateDir(io::Error),
    OpenRejected(io::Error),
    WriteRejected(io::Error),
}

fn probe_o_direct(dir: &Path) -> DirectProbe {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    if let Err(e) = std::fs::create_dir_all(dir) {
        return DirectProbe::CannotCreateDir(e);
    }
    let probe = dir.join(format!(".ringmq-tune-probe-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&probe);
    let result = match file {
        Err(e) => DirectProbe::OpenRejected(e),
        Ok(file) => {
            let block = AlignedBlock::new();
            match file.write_at(block.as_slice(), 0) {
                Ok(_) => DirectProbe::Ok,
                Err(e) => DirectProbe::WriteRejected(e),
            }
        }
    };
    let _ = std::fs::remove_file(&probe);
    result
}

/// One zeroed 4 KiB block at a 4 KiB boundary, as O_DIRECT wants.
pub(crate) struct AlignedBlock {
    ptr: *mut u8,
}

impl AlignedBlock {
    const LAYOUT: std::alloc::Layout = match std::alloc::Layout::from_size_align(4096, 4096) {
        Ok(l) => l,
        Err(_) => panic!("4096/4096 is a valid layout"),
    };

    pub(crate) fn new() -> AlignedBlock {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(Self::LAYOUT) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(Self::LAYOUT);
        }
        AlignedBlock { ptr }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live, initialised (zeroed) allocation of 4096 bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, Self::LAYOUT.size()) }
    }

    /// For reads into the block; only tests read past the page cache so far.
    #[cfg(test)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, Self::LAYOUT.size()) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, Self::LAYOUT) }
    }
}

fn o_direct_finding(dir: &Path, probe: &DirectProbe, mount: Option<&MountEntry>) -> Finding {
    let rec = "supported (ext4 or XFS on a local disk)";
    let setting = "O_DIRECT on data dir";
    let on = mount.map(|m| format!(" on {} ({})", m.fs_type, m.mount_point)).unwrap_or_default();
    let in_memory = mount.is_some_and(|m| matches!(m.fs_type.as_str(), "tmpfs" | "ramfs"));
    match probe {
        // Since Linux 6.6 tmpfs accepts O_DIRECT and serves it from memory.
        DirectProbe::Ok if in_memory => {
            finding(setting, format!("accepted but emulated{on}: data in RAM, lost at reboot"), rec, Status::Fatal)
        }
        DirectProbe::Ok => finding(setting, format!("supported{on}"), rec, Status::Ok),
        DirectProbe::CannotCreateDir(e) => {
            finding(setting, format!("cannot create {}: {}", dir.display(), short_err(e)), rec, Status::Fatal)
        }
        DirectProbe::OpenRejected(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            finding(setting, format!("unsupported (EINVAL at open){on}"), rec, Status::Fatal)
        }
        DirectProbe::OpenRejected(e) => {
            finding(setting, format!("cannot create a file in {}: {}", dir.display(), short_err(e)), rec, Status::Fatal)
        }
        DirectProbe::WriteRejected(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            finding(setting, format!("4 KiB O_DIRECT write rejected (EINVAL){on}"), rec, Status::Fatal)
        }
        DirectProbe::WriteRejected(e) => {
            finding(setting, format!("probe write failed: {}{on}", short_err(e)), rec, Status::Fatal)
        }
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub major: u32,
    pub minor: u32,
    pub mount_point: String,
    pub mount_options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountEntry {
    fn has_option(&self, opt: &str) -> bool {
        self.mount_options.iter().chain(self.super_options.iter()).any(|o| o == opt)
    }
}

/// Parses /proc/self/mountinfo (see proc(5)); malformed lines are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            if sep < 6 || fields.len() < sep + 3 {
                return None;
            }
            let (major, minor) = fields[2].split_once(':')?;
            let split = |s: &str| s.split(',').filter(|o| !o.is_empty()).map(String::from).collect::<Vec<_>>();
            Some(MountEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: unescape_octal(fields[4]),
                mount_options: split(fields[5]),
                fs_type: fields[sep + 1].to_string(),
                source: unescape_octal(fields[sep + 2]),
                super_options: fields.get(sep + 3).map(|s| split(s)).unwrap_or_default(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (absolute, symlinks resolved): the longest mount
/// point that is `path` or a parent of it. Of mounts stacked on the same
/// point the visible one is listed last; one whose device is `dev` wins.
pub(crate) fn find_mount<'a>(mounts: &'a [MountEntry], path: &Path, dev: Option<(u32, u32)>) -> Option<&'a MountEntry> {
    let mut best: Option<&MountEntry> = None;
    for m in mounts {
        if !path.starts_with(Path::new(&m.mount_point)) {
            continue;
        }
        best = match best {
            None => Some(m),
            Some(b) if m.mount_point.len() > b.mount_point.len() => Some(m),
            Some(b) if m.mount_point.len() == b.mount_point.len() => {
                let b_dev = dev == Some((b.major, b.minor));
                let m_dev = dev == Some((m.major, m.minor));
                if b_dev && !m_dev {
                    Some(b)
                } else {
                    Some(m)
                }
            }
            keep => keep,
        };
    }
    best
}

/// Major and minor of a `dev_t` (glibc's encoding).
pub(crate) fn dev_major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Where the data dir lives: its device and its mount.
struct DataDirPlace {
    canonical: PathBuf,
    dev: Option<(u32, u32)>,
    mount: Option<MountEntry>,
    mount_error: Option<String>,
}

impl DataDirPlace {
    fn resolve(host: &Host, data_dir: &Path) -> DataDirPlace {
        use std::os::unix::fs::MetadataExt;
        // If the dir could not be made, look at its nearest existing parent.
        let mut existing = data_dir.to_path_buf();
        while !existing.exists() {
            match existing.parent() {
                Some(p) => existing = p.to_path_buf(),
                None => break,
            }
        }
        let canonical = std::fs::canonicalize(&existing).unwrap_or(existing);
        let dev = std::fs::metadata(&canonical).ok().map(|m| dev_major_minor(m.dev()));
        let (mount, mount_error) = match std::fs::read_to_string(host.proc_path("self/mountinfo")) {
            Ok(text) => {
                let mounts = parse_mountinfo(&text);
                match find_mount(&mounts, &canonical, dev) {
                    Some(m) => (Some(m.clone()), None),
                    None => (None, Some("no mount in /proc/self/mountinfo holds it".to_string())),
                }
            }
            Err(e) => (None, Some(format!("/proc/self/mountinfo: {}", short_err(&e)))),
        };
        DataDirPlace { canonical, dev, mount, mount_error }
    }
}

fn filesystem_findings(data_dir: &Path, place: &DataDirPlace) -> Vec<Finding> {
    let fs_rec = "xfs or ext4 on a local NVMe/SSD";
    let atime_rec = "noatime";
    let discard_rec = "no online discard; weekly fstrim.timer instead";
    let Some(m) = &place.mount else {
        let why = place.mount_error.clone().unwrap_or_default();
        return vec![
            unknown("data dir filesystem", &why, fs_rec),
            unknown("data dir atime", &why, atime_rec),
            unknown("data dir discard", &why, discard_rec),
        ];
    };
    let shown = if place.canonical == data_dir { String::new() } else { format!(" ({})", place.canonical.display()) };
    let fs_status = if matches!(m.fs_type.as_str(), "xfs" | "ext4") { Status::Ok } else { Status::Warn };
    let fs_row = finding(
        "data dir filesystem",
        format!("{} from {} at {}{shown}", m.fs_type, m.source, m.mount_point),
        fs_rec,
        fs_status,
    );
    let atime_row = if m.has_option("noatime") {
        finding("data dir atime", "noatime", atime_rec, Status::Ok)
    } else if m.has_option("relatime") {
        finding("data dir atime", "relatime", atime_rec, Status::Warn)
    } else {
        finding("data dir atime", "strictatime (atime written on every read)", atime_rec, Status::Warn)
    };
    let discard_row = if m.has_option("discard") {
        finding(
            "data dir discard",
            "discard (synchronous TRIM when retention deletes segments)",
            discard_rec,
            Status::Warn,
        )
    } else if let Some(o) = m.mount_options.iter().chain(m.super_options.iter()).find(|o| o.starts_with("discard=")) {
        finding(
            "data dir discard",
            o.clone(),
            discard_rec,
            if o == "discard=async" { Status::Ok } else { Status::Warn },
        )
    } else {
        finding("data dir discard", "off", discard_rec, Status::Ok)
    };
    vec![fs_row, atime_row, discard_row]
}

// ---------------------------------------------------------------------------
// Block device of the data dir.

/// The disk holding the filesystem (its read-ahead is the one mmap reads
/// use) and the physical disks under it (scheduler, merges, cache).
struct BlockDevs {
    top: (String, PathBuf),
    leaves: Vec<(String, PathBuf)>,
}

/// Resolves a device number to its sysfs disk: a partition is replaced by
/// its disk; a device-mapper/md device keeps itself as `top` and lists the
/// disks under it (recursively) as leaves.
fn resolve_block(host: &Host, major: u32, minor: u32) -> Option<BlockDevs> {
    let dev = std::fs::canonicalize(host.sys_path(&format!("dev/block/{major}:{minor}"))).ok()?;
    let top = whole_disk(&dev);
    let mut leaves = Vec::new();
    collect_leaves(&top, &mut leaves, 0);
    Some(BlockDevs { top: (dir_name(&top), top), leaves })
}

fn whole_disk(dev: &Path) -> PathBuf {
    if dev.join("partition").exists() {
        if let Some(parent) = dev.parent() {
            return parent.to_path_buf();
        }
    }
    dev.to_path_buf()
}

fn collect_leaves(disk: &Path, out: &mut Vec<(String, PathBuf)>, depth: usize) {
    let slaves: Vec<PathBuf> = std::fs::read_dir(disk.join("slaves"))
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| std::fs::canonicalize(e.path()).ok()).collect())
        .unwrap_or_default();
    if slaves.is_empty() || depth > 8 {
        if !out.iter().any(|(_, p)| p == disk) {
            out.push((dir_name(disk), disk.to_path_buf()));
        }
        return;
    }
    for s in slaves {
        collect_leaves(&whole_disk(&s), out, depth + 1);
    }
}

fn dir_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// The `[bracketed]` choice of a sysfs multiple-choice file.
pub(crate) fn selected_choice(text: &str) -> Option<&str> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(&text[start + 1..end])
}

fn block_findings(host: &Host, place: &DataDirPlace) -> Vec<Finding> {
    let ra_rec = "128-1024 (mmap reads and MADV_WILLNEED are sized by it)";
    let sched_rec = "none (NVMe, SSD, virtual disk)";
    let merges_rec = "2 (no merge lookups; 1 is fine)";
    let fs = place.mount.as_ref().map(|m| m.fs_type.clone()).unwrap_or_else(|| "?".into());
    let source = place.mount.as_ref().map(|m| m.source.clone()).unwrap_or_default();
    // st_dev first; btrfs and the like report an anonymous st_dev, so then
    // the mount source (/dev/...) is tried.
    let mut devs = place.dev.and_then(|(ma, mi)| resolve_block(host, ma, mi));
    if devs.is_none() && source.starts_with("/dev/") {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(&source) {
            let (ma, mi) = dev_major_minor(meta.rdev());
            devs = resolve_block(host, ma, mi);
        }
    }
    let Some(devs) = devs else {
        let why = format!("no block device behind {fs} {source}").trim_end().to_string();
        return vec![unknown("block device", why, "a local NVMe/SSD")];
    };
    let mut out = Vec::new();
    let leaf_names: Vec<&str> = devs.leaves.iter().map(|(n, _)| n.as_str()).collect();
    let under = if leaf_names.len() == 1 && leaf_names[0] == devs.top.0 {
        String::new()
    } else {
        format!(" over {}", leaf_names.join(", "))
    };
    let dev_text = place.dev.map(|(a, b)| format!(" ({a}:{b})")).unwrap_or_default();
    out.push(finding("block device", format!("{}{dev_text}{under}", devs.top.0), "a local NVMe/SSD", Status::Ok));

    let ra_setting = format!("{} read_ahead_kb", devs.top.0);
    out.push(match read_trimmed(&devs.top.1.join("queue/read_ahead_kb")).map(|s| s.parse::<u64>()) {
        Ok(Ok(kb)) => finding(
            ra_setting,
            kb.to_string(),
            ra_rec,
            if (64..=4096).contains(&kb) { Status::Ok } else { Status::Warn },
        ),
        Ok(Err(_)) => unknown(ra_setting, "not a number", ra_rec),
        Err(e) => unknown(ra_setting, short_err(&e), ra_rec),
    });
    for (name, path) in &devs.leaves {
        let queue = path.join("queue");
        let rotational = read_trimmed(&queue.join("rotational")).ok().map(|s| s == "1");
        let setting = format!("{name} scheduler");
        out.push(match read_trimmed(&queue.join("scheduler")) {
            Ok(text) => {
                let sel = selected_choice(&text).unwrap_or(text.as_str()).to_string();
                let (status, rec) = match (sel.as_str(), rotational) {
                    ("none", _) => (Status::Ok, sched_rec.to_string()),
                    ("mq-deadline", Some(true)) => {
                        (Status::Ok, "mq-deadline for a spinning disk; none if it is really flash (virtual disks often claim rotational)".to_string())
                    }
                    _ => (Status::Warn, sched_rec.to_string()),
                };
                let rot = if rotational == Some(true) { " (rotational=1)" } else { "" };
                finding(setting, format!("{sel}{rot}"), rec, status)
            }
            Err(e) => unknown(setting, short_err(&e), sched_rec),
        });
        let setting = format!("{name} nomerges");
        out.push(match read_trimmed(&queue.join("nomerges")) {
            Ok(v) if v == "0" => finding(setting, "0 (merge lookups on)", merges_rec, Status::Warn),
            Ok(v) if v == "1" || v == "2" => finding(setting, v, merges_rec, Status::Ok),
            Ok(v) => unknown(setting, v, merges_rec),
            Err(e) => unknown(setting, short_err(&e), merges_rec),
        });
        let setting = format!("{name} io_poll");
        let poll_rec = "optional: polled queues (nvme.poll_queues=N) let shards poll for disk completions";
        out.push(match read_trimmed(&queue.join("io_poll")) {
            Ok(v) if v == "1" => finding(setting, "1 (polled completions)", poll_rec, Status::Ok),
            Ok(v) if v == "0" => finding(setting, "0 (interrupt completions)", poll_rec, Status::Ok),
            Ok(v) => unknown(setting, v, poll_rec),
            Err(e) => unknown(setting, short_err(&e), poll_rec),
        });
        let setting = format!("{name} write_cache");
        let wc_rec = "either; 'write through' (power-loss protected) makes O_DSYNC commits cheapest";
        out.push(match read_trimmed(&queue.join("write_cache")) {
            Ok(v) if v == "write back" => {
                finding(setting, "write back (each O_DSYNC commit flushes the cache)", wc_rec, Status::Ok)
            }
            Ok(v) => finding(setting, v, wc_rec, Status::Ok),
            Err(e) => unknown(setting, short_err(&e), wc_rec),
        });
    }
    out
}

// ---------------------------------------------------------------------------
// CPUs: isolation, IRQs, frequency, idle states.

/// Kernel command line parameters in order, `(name, value)`; a bare flag has
/// no value. Double quotes group (and are removed); `--` ends the kernel's
/// part (what follows is for init).
pub(crate) fn parse_cmdline(text: &str) -> Vec<(String, Option<String>)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut token = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
            } else if c.is_whitespace() && !quoted {
                break;
            } else {
                token.push(c);
            }
            chars.next();
        }
        if token == "--" {
            break;
        }
        match token.split_once('=') {
            Some((k, v)) => params.push((k.to_string(), Some(v.to_string()))),
            None => params.push((token, None)),
        }
    }
    params
}

/// The last value given for `name`: `Some(None)` for a bare flag.
fn cmdline_get<'a>(params: &'a [(String, Option<String>)], name: &str) -> Option<Option<&'a str>> {
    params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_deref())
}

/// `isolcpus=[flag,...,]cpu-list`: the flags and the CPU-list part.
pub(crate) fn split_isolcpus(value: &str) -> (Vec<String>, String) {
    let mut flags = Vec::new();
    let mut rest: Vec<&str> = value.split(',').collect();
    while let Some(first) = rest.first() {
        if !first.is_empty() && first.chars().all(|c| c.is_ascii_alphabetic() || c == '_') && *first != "N" {
            flags.push(first.to_string());
            rest.remove(0);
        } else {
            break;
        }
    }
    (flags, rest.join(","))
}

/// A kernel CPU list (`0-3,8,10-15:2/4`, `N` for the last CPU), sorted and
/// deduplicated. `None` when malformed. `last` stands in for `N`.
pub(crate) fn parse_cpu_list(text: &str, last: Option<usize>) -> Option<Vec<usize>> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() || text == "(null)" {
        return Some(cpus);
    }
    let num = |s: &str| -> Option<usize> {
        match s.trim() {
            "N" => last,
            s => s.parse().ok(),
        }
    };
    for part in text.split(',') {
        let (range, stride) = match part.split_once(':') {
            Some((r, s)) => {
                let (used, group) = s.split_once('/')?;
                (r, Some((used.trim().parse::<usize>().ok()?, group.trim().parse::<usize>().ok()?)))
            }
            None => (part, None),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(range)?, num(range)?),
        };
        // Linux has at most 8192 CPUs; a larger number is garbage, not a range to build.
        if lo > hi || hi > 65_535 {
            return None;
        }
        match stride {
            None => cpus.extend(lo..=hi),
            Some((used, group)) => {
                if group == 0 || used == 0 || used > group {
                    return None;
                }
                let mut start = lo;
                while start <= hi {
                    cpus.extend((start..start + used).filter(|&c| c <= hi));
                    start += group;
                }
            }
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// Hex CPU mask as in /proc/irq/default_smp_affinity (`ff`, `00000000,000000ff`).
pub(crate) fn parse_hex_mask(text: &str) -> Option<Vec<usize>> {
    let digits: String = text.trim().chars().filter(|c| *c != ',').collect();
    if digits.is_empty() {
        return None;
    }
    let mut cpus = Vec::new();
    for (i, c) in digits.chars().rev().enumerate() {
        let v = c.to_digit(16)? as usize;
        for bit in 0..4 {
            if v & (1 << bit) != 0 {
                cpus.push(i * 4 + bit);
            }
        }
    }
    Some(cpus)
}

/// `[0,1,2,5,7,8]` → `0-2,5,7-8`; empty → `none`.
pub(crate) fn format_cpu_list(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        return "none".into();
    }
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { sorted[i].to_string() } else { format!("{}-{}", sorted[i], sorted[j]) });
        i = j + 1;
    }
    parts.join(",")
}

struct CpuFacts {
    online: Option<Vec<usize>>,
    cmdline: Option<Vec<(String, Option<String>)>>,
    cmdline_error: Option<String>,
    /// Domain-isolated CPUs (/sys/devices/system/cpu/isolated).
    isolated: Option<Vec<usize>>,
    isolcpus_flags: Vec<String>,
    nohz_full: Option<Vec<usize>>,
    rcu_nocbs: Option<Vec<usize>>,
}

impl CpuFacts {
    fn read(host: &Host) -> CpuFacts {
        let online = host.read_sys("devices/system/cpu/online").ok().and_then(|s| parse_cpu_list(&s, None));
        let last = online.as_ref().and_then(|o| o.last().copied());
        let (cmdline, cmdline_error) = match host.read_proc("cmdline") {
            Ok(s) => (Some(parse_cmdline(&s)), None),
            Err(e) => (None, Some(short_err(&e))),
        };
        let from_cmdline = |name: &str| -> Option<Vec<usize>> {
            let v = cmdline_get(cmdline.as_ref()?, name)?;
            parse_cpu_list(v.unwrap_or(""), last)
        };
        let (isolcpus_flags, isolcpus_list) = match cmdline.as_ref().and_then(|c| cmdline_get(c, "isolcpus")) {
            Some(Some(v)) => {
                let (flags, list) = split_isolcpus(v);
                (flags, parse_cpu_list(&list, last))
            }
            _ => (Vec::new(), None),
        };
        let isolated = match host.read_sys("devices/system/cpu/isolated") {
            Ok(s) => parse_cpu_list(&s, last),
            Err(_) => isolcpus_list.or_else(|| cmdline.as_ref().map(|_| Vec::new())),
        };
        let nohz_full = match host.read_sys("devices/system/cpu/nohz_full") {
            Ok(s) => parse_cpu_list(&s, last),
            Err(_) => from_cmdline("nohz_full").or_else(|| cmdline.as_ref().map(|_| Vec::new())),
        };
        let rcu_nocbs = from_cmdline("rcu_nocbs").or_else(|| cmdline.as_ref().map(|_| Vec::new()));
        CpuFacts { online, cmdline, cmdline_error, isolated, isolcpus_flags, nohz_full, rcu_nocbs }
    }
}

fn isolation_findings(cpus: &CpuFacts, shards: usize) -> Vec<Finding> {
    let online = cpus.online.as_ref().map(Vec::len);
    let iso_rec = format!(
        "isolcpus=managed_irq,domain,<{shards} shard CPUs>; shards pinned there (CPUAffinity= and --cores LIST)"
    );
    let nohz_rec = "nohz_full=<shard CPUs>";
    let rcu_rec = "rcu_nocbs=<shard CPUs> (implied by nohz_full)";
    let mut out = Vec::new();
    let why = cpus.cmdline_error.clone().unwrap_or_else(|| "unreadable".into());
    let Some(isolated) = &cpus.isolated else {
        return vec![
            unknown("isolcpus", &why, iso_rec),
            unknown("nohz_full", &why, nohz_rec),
            unknown("rcu_nocbs", &why, rcu_rec),
        ];
    };
    let flags =
        if cpus.isolcpus_flags.is_empty() { String::new() } else { format!(" ({})", cpus.isolcpus_flags.join(",")) };
    let no_room = online.is_some_and(|n| shards >= n);
    let iso_row = if no_room {
        finding(
            "isolcpus",
            format!("{}{flags}; {shards} shards on {} online CPUs", format_cpu_list(isolated), online.unwrap_or(0)),
            format!(
                "leave >= 1 CPU to the kernel: at most {} shard(s) here, isolated",
                online.unwrap_or(1).saturating_sub(1).max(1)
            ),
            Status::Warn,
        )
    } else if isolated.len() >= shards {
        finding("isolcpus", format!("{}{flags}", format_cpu_list(isolated)), iso_rec, Status::Ok)
    } else if isolated.is_empty() {
        finding("isolcpus", "none", iso_rec, Status::Warn)
    } else {
        finding(
            "isolcpus",
            format!("{}{flags}: fewer than {shards} shards", format_cpu_list(isolated)),
            iso_rec,
            Status::Warn,
        )
    };
    out.push(iso_row);
    // Compare against the isolated set when there is one, else the count.
    let covers = |set: &[usize]| -> bool {
        if isolated.is_empty() {
            set.len() >= shards
        } else {
            isolated.iter().all(|c| set.contains(c))
        }
    };
    out.push(match &cpus.nohz_full {
        None => unknown("nohz_full", &why, nohz_rec),
        Some(n) if n.is_empty() => finding("nohz_full", "none", nohz_rec, Status::Warn),
        Some(n) => {
            finding("nohz_full", format_cpu_list(n), nohz_rec, if covers(n) { Status::Ok } else { Status::Warn })
        }
    });
    let mut offloaded = cpus.rcu_nocbs.clone().unwrap_or_default();
    offloaded.extend(cpus.nohz_full.clone().unwrap_or_default());
    offloaded.sort_unstable();
    offloaded.dedup();
    let bare_rcu = cpus.cmdline.as_ref().and_then(|c| cmdline_get(c, "rcu_nocbs")) == Some(None);
    out.push(if cpus.rcu_nocbs.is_none() && cpus.nohz_full.is_none() {
        unknown("rcu_nocbs", &why, rcu_rec)
    } else if offloaded.is_empty() {
        let current = if bare_rcu { "none at boot (bare rcu_nocbs: cpusets may offload)" } else { "none" };
        finding("rcu_nocbs", current, rcu_rec, Status::Warn)
    } else {
        finding(
            "rcu_nocbs",
            format_cpu_list(&offloaded),
            rcu_rec,
            if covers(&offloaded) { Status::Ok } else { Status::Warn },
        )
    });
    out
}

fn irq_finding(host: &Host, cpus: &CpuFacts) -> Finding {
    let rec = "IRQs on housekeeping CPUs only (irqaffinity=, irqbalance bans isolated CPUs)";
    let default = match host.read_proc("irq/default_smp_affinity") {
        Ok(s) => match parse_hex_mask(&s) {
            Some(m) => m,
            None => return unknown("IRQ affinity", format!("default_smp_affinity {s:?}"), rec),
        },
        Err(e) => return unknown("IRQ affinity", format!("/proc/irq: {}", short_err(&e)), rec),
    };
    let isolated = cpus.isolated.clone().unwrap_or_default();
    if isolated.is_empty() {
        return finding(
            "IRQ affinity",
            format!("default {}; no isolated CPUs to keep them off", format_cpu_list(&default)),
            rec,
            Status::Warn,
        );
    }
    let mut on_isolated = 0;
    if let Ok(rd) = std::fs::read_dir(host.proc_path("irq")) {
        for e in rd.filter_map(|e| e.ok()) {
            if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let list = read_trimmed(&e.path().join("effective_affinity_list"))
                .or_else(|_| read_trimmed(&e.path().join("smp_affinity_list")));
            if let Some(set) = list.ok().and_then(|s| parse_cpu_list(&s, None)) {
                if set.iter().any(|c| isolated.contains(c)) {
                    on_isolated += 1;
                }
            }
        }
    }
    let overlap = default.iter().any(|c| isolated.contains(c));
    let current = format!(
        "default {}; {on_isolated} IRQs on isolated CPUs (per-CPU NVMe queues are expected)",
        format_cpu_list(&default)
    );
    finding("IRQ affinity", current, rec, if overlap { Status::Warn } else { Status::Ok })
}

/// Numbered `cpuN` directories under /sys/devices/system/cpu.
fn cpu_dirs(host: &Host) -> Vec<(usize, PathBuf)> {
    let mut dirs: Vec<(usize, PathBuf)> = std::fs::read_dir(host.sys_path("devices/system/cpu"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix("cpu")?.parse::<usize>().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn governor_finding(host: &Host) -> Finding {
    let rec = "performance";
    let mut by_governor: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, dir) in cpu_dirs(host) {
        if let Ok(g) = read_trimmed(&dir.join("cpufreq/scaling_governor")) {
            by_governor.entry(g).or_default().push(n);
        }
    }
    if by_governor.is_empty() {
        return unknown("cpufreq governor", "no cpufreq in sysfs: VM or firmware-controlled", rec);
    }
    let status = if by_governor.keys().all(|g| g == "performance") { Status::Ok } else { Status::Warn };
    let current: Vec<String> = by_governor.iter().map(|(g, c)| format!("{g} on {}", format_cpu_list(c))).collect();
    finding("cpufreq governor", current.join("; "), rec, status)
}

fn cstate_finding(host: &Host) -> Finding {
    let rec = format!("every enabled C-state exits in < {CSTATE_LATENCY_LIMIT_US} us (C1/C1E): cpupower idle-set -D {CSTATE_LATENCY_LIMIT_US}");
    let driver = match host.read_sys("devices/system/cpu/cpuidle/current_driver") {
        Ok(d) => d,
        Err(e) => return unknown("C-states", format!("cpuidle: {}", short_err(&e)), rec),
    };
    if driver == "none" {
        return finding("C-states", "no cpuidle driver (default idle, C1)", rec, Status::Ok);
    }
    // Deepest enabled state over all CPUs: (latency, name).
    let mut deepest: Option<(u64, String)> = None;
    for (_, dir) in cpu_dirs(host) {
        let Ok(rd) = std::fs::read_dir(dir.join("cpuidle")) else { continue };
        for st in rd.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("state")) {
            let p = st.path();
            if read_trimmed(&p.join("disable")).map(|d| d != "0").unwrap_or(false) {
                continue;
            }
            let Ok(Ok(lat)) = read_trimmed(&p.join("latency")).map(|s| s.parse::<u64>()) else { continue };
            let name = read_trimmed(&p.join("name")).unwrap_or_else(|_| dir_name(&p));
            if deepest.as_ref().is_none_or(|(l, _)| lat > *l) {
                deepest = Some((lat, name));
            }
        }
    }
    match deepest {
        None => unknown("C-states", format!("driver {driver}, no states readable"), rec),
        Some((lat, name)) => {
            let status = if lat < CSTATE_LATENCY_LIMIT_US { Status::Ok } else { Status::Warn };
            finding("C-states", format!("driver {driver}; deepest enabled {name} ({lat} us exit)"), rec, status)
        }
    }
}

// ---------------------------------------------------------------------------
// Memory.

fn thp_findings(host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    for (file, rec, bad) in [
        ("enabled", "madvise (or never)", &["always"][..]),
        ("defrag", "madvise, defer+madvise or defer", &["always"][..]),
    ] {
        let setting = format!("THP {file}");
        out.push(match host.read_sys(&format!("kernel/mm/transparent_hugepage/{file}")) {
            Ok(text) => match selected_choice(&text) {
                Some(sel) => finding(setting, sel, rec, if bad.contains(&sel) { Status::Warn } else { Status::Ok }),
                None => unknown(setting, text, rec),
            },
            Err(e) => unknown(setting, short_err(&e), rec),
        });
    }
    out
}

fn read_meminfo_total(host: &Host) -> Option<u64> {
    let text = host.read_proc("meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `1536` → `1.5 KiB`; whole units without decimals.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{} {}", v.round() as u64, UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Judges one dirty threshold: `bytes` wins when non-zero (as in the
/// kernel), else `ratio` percent of memory.
pub(crate) fn judge_dirty(
    setting: &str,
    ratio: u64,
    bytes: u64,
    mem_total: Option<u64>,
    max_bytes: u64,
    rec: &str,
) -> Finding {
    let (effective, current) = if bytes > 0 {
        (Some(bytes), format!("{} ({setting}_bytes)", human_bytes(bytes)))
    } else {
        let eff = mem_total.map(|m| m / 100 * ratio);
        let approx = eff.map(|e| format!(", up to ~{}", human_bytes(e))).unwrap_or_default();
        (eff, format!("{ratio}% ({setting}_ratio{approx})"))
    };
    let status = match effective {
        Some(e) if e <= max_bytes => Status::Ok,
        _ => Status::Warn,
    };
    finding(setting, current, rec, status)
}

fn vm_findings(host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let sw_rec = "1 (keep shard memory out of swap)";
    out.push(match host.sysctl_u64("vm.swappiness") {
        Ok(v) => finding("vm.swappiness", v.to_string(), sw_rec, if v <= 10 { Status::Ok } else { Status::Warn }),
        Err(e) => unknown("vm.swappiness", short_err(&e), sw_rec),
    });
    let mem = read_meminfo_total(host);
    for (name, max, rec) in [
        ("vm.dirty_background", 256u64 << 20, "<= 256 MiB (99-ringmq.conf: 64 MiB bytes)"),
        ("vm.dirty", 1u64 << 30, "<= 1 GiB (99-ringmq.conf: 256 MiB bytes)"),
    ] {
        let ratio = host.sysctl_u64(&format!("{name}_ratio"));
        let bytes = host.sysctl_u64(&format!("{name}_bytes"));
        out.push(match (ratio, bytes) {
            (Ok(r), Ok(b)) => judge_dirty(name, r, b, mem, max, rec),
            (Err(e), _) | (_, Err(e)) => unknown(name, short_err(&e), rec),
        });
    }
    let map_rec = "1048576 (>= 262144): one mapping per segment file";
    out.push(match host.sysctl_u64("vm.max_map_count") {
        Ok(v) => {
            finding("vm.max_map_count", v.to_string(), map_rec, if v >= 262_144 { Status::Ok } else { Status::Warn })
        }
        Err(e) => unknown("vm.max_map_count", short_err(&e), map_rec),
    });
    let aio_rec = "default 65536: ringmq uses io_uring, not Linux AIO";
    out.push(match host.sysctl_u64("fs.aio-max-nr") {
        Ok(v) => finding("fs.aio-max-nr", v.to_string(), aio_rec, Status::Ok),
        Err(e) => unknown("fs.aio-max-nr", short_err(&e), aio_rec),
    });
    out
}

/// (soft, hard) from a getrlimit call (the resource's type differs
/// between libcs, hence the closure).
#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
fn rlimit(get: impl FnOnce(&mut libc::rlimit) -> libc::c_int) -> Option<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if get(&mut lim) == 0 {
        Some((lim.rlim_cur as u64, lim.rlim_max as u64))
    } else {
        None
    }
}

/// io_memory per shard that ringmq derives from a finite, non-root memlock
/// limit (runtime::io_memory_per_shard): 90% of it over 3 rings per shard,
/// in whole pages, at most 10 MiB.
pub(crate) fn io_memory_per_shard(limit: u64, shards: usize) -> u64 {
    let per_shard = limit / 10 * 9 / (RINGS_PER_SHARD * shards.max(1) as u64) / 4096 * 4096;
    per_shard.min(IO_MEMORY_DEFAULT_BYTES)
}

/// Smallest memlock limit that gives every shard the full 10 MiB.
pub(crate) fn memlock_for_full_io_memory(shards: usize) -> u64 {
    let need = (IO_MEMORY_DEFAULT_BYTES * RINGS_PER_SHARD).saturating_mul(shards.max(1) as u64);
    need.div_ceil(9).saturating_mul(10)
}

/// `soft`: RLIMIT_MEMLOCK soft limit (`None`: unlimited). `ipc_lock`: the
/// process has CAP_IPC_LOCK, so io_uring does not charge its buffers.
/// `root`: euid 0 (ringmq then assumes it is not bound and asks 10 MiB).
pub(crate) fn judge_memlock(soft: Option<u64>, ipc_lock: bool, root: bool, shards: usize) -> Finding {
    let full = memlock_for_full_io_memory(shards);
    let rec = format!(">= {} for 10 MiB io_memory x {shards} shards, or unlimited; never < 512 KiB", human_bytes(full));
    let shown = soft.map(human_bytes).unwrap_or_else(|| "unlimited".into());
    let Some(limit) = soft else {
        return finding("RLIMIT_MEMLOCK", "unlimited", rec, Status::Ok);
    };
    if limit < MEMLOCK_MIN_BYTES {
        return finding(
            "RLIMIT_MEMLOCK",
            format!("{shown}: glommio refuses to start below 512 KiB (root too)"),
            rec,
            Status::Fatal,
        );
    }
    if ipc_lock {
        return finding(
            "RLIMIT_MEMLOCK",
            format!("{shown}; CAP_IPC_LOCK: io_uring buffers not charged"),
            rec,
            Status::Ok,
        );
    }
    let all_shards = (IO_MEMORY_DEFAULT_BYTES * RINGS_PER_SHARD).saturating_mul(shards.max(1) as u64);
    if root {
        // ringmq takes root as unbounded and asks the full 10 MiB per shard.
        if limit >= all_shards {
            return finding(
                "RLIMIT_MEMLOCK",
                format!("{shown}; root without CAP_IPC_LOCK, covers 10 MiB per shard"),
                rec,
                Status::Ok,
            );
        }
        let current =
            format!("{shown}; root without CAP_IPC_LOCK: ringmq asks {} (10 MiB x 3 rings x {shards}), buffer registration fails", human_bytes(all_shards));
        return finding("RLIMIT_MEMLOCK", current, rec, Status::Warn);
    }
    let per_shard = io_memory_per_shard(limit, shards);
    let status = if per_shard >= IO_MEMORY_DEFAULT_BYTES { Status::Ok } else { Status::Warn };
    finding("RLIMIT_MEMLOCK", format!("{shown}: {} io_memory per shard", human_bytes(per_shard)), rec, status)
}

/// CAP_IPC_LOCK in the effective set, from /proc/self/status (else euid 0).
fn has_cap_ipc_lock() -> bool {
    let from_status = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_string();
        u64::from_str_radix(&hex, 16).ok()
    });
    match from_status {
        Some(caps) => caps & (1 << CAP_IPC_LOCK_BIT) != 0,
        // SAFETY: geteuid has no preconditions.
        None => (unsafe { libc::geteuid() }) == 0,
    }
}

#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
fn memlock_finding(shards: usize) -> Finding {
    let Some((soft, _hard)) = rlimit(|l| unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, l) }) else {
        return unknown("RLIMIT_MEMLOCK", "getrlimit failed", "unlimited");
    };
    let soft = if soft == libc::RLIM_INFINITY as u64 { None } else { Some(soft) };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut f = judge_memlock(soft, has_cap_ipc_lock(), root, shards);
    f.current.push_str(" (this process)");
    f
}

#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
fn nofile_finding() -> Finding {
    let rec = ">= 65536 (ringmq.service: LimitNOFILE=1048576)";
    match rlimit(|l| unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, l) }) {
        None => unknown("RLIMIT_NOFILE", "getrlimit failed", rec),
        Some((soft, _)) => {
            let shown = if soft == libc::RLIM_INFINITY as u64 { "unlimited".to_string() } else { soft.to_string() };
            finding(
                "RLIMIT_NOFILE",
                format!("{shown} (this process)"),
                rec,
                if soft >= 65_536 { Status::Ok } else { Status::Warn },
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Network, clock.

fn net_findings(host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let rec = format!(">= {LISTEN_BACKLOG} (ringmq listens with backlog {LISTEN_BACKLOG} per shard); 4096");
    out.push(match host.sysctl_u64("net.core.somaxconn") {
        Ok(v) => finding(
            "net.core.somaxconn",
            v.to_string(),
            rec,
            if v >= LISTEN_BACKLOG { Status::Ok } else { Status::Warn },
        ),
        Err(e) => unknown("net.core.somaxconn", short_err(&e), rec),
    });
    let rec = "tcp_syncookies=1 (then the backlog bounds the SYN queue); else tcp_max_syn_backlog >= 4096";
    let setting = "net.ipv4.tcp_syncookies / tcp_max_syn_backlog";
    out.push(match (host.sysctl_u64("net.ipv4.tcp_syncookies"), host.sysctl_u64("net.ipv4.tcp_max_syn_backlog")) {
        (Ok(c), Ok(b)) => {
            finding(setting, format!("{c} / {b}"), rec, if c >= 1 || b >= 4096 { Status::Ok } else { Status::Warn })
        }
        (Err(e), _) | (_, Err(e)) => unknown(setting, short_err(&e), rec),
    });
    let rec = "0 / 0 (io_uring receives do not busy-poll; see tuning/README.md)";
    let setting = "net.core.busy_read / busy_poll";
    out.push(match (host.sysctl_u64("net.core.busy_read"), host.sysctl_u64("net.core.busy_poll")) {
        (Ok(r), Ok(p)) => finding(setting, format!("{r} / {p}"), rec, Status::Ok),
        (Err(e), _) | (_, Err(e)) => unknown(setting, short_err(&e), rec),
    });
    out
}

fn clocksource_finding(host: &Host) -> Finding {
    let good: &[&str] =
        &["tsc", "kvm-clock", "arch_sys_counter", "hyperv_clocksource_tsc_page", "timebase", "riscv_clocksource"];
    let rec = if cfg!(target_arch = "x86_64") {
        "tsc (kvm-clock in a KVM guest)"
    } else {
        "the CPU counter (arch_sys_counter)"
    };
    match host.read_sys("devices/system/clocksource/clocksource0/current_clocksource") {
        Ok(c) => {
            let status = if good.contains(&c.as_str()) { Status::Ok } else { Status::Warn };
            let available =
                host.read_sys("devices/system/clocksource/clocksource0/available_clocksource").unwrap_or_default();
            let current =
                if available.is_empty() || status == Status::Ok { c } else { format!("{c} (available: {available})") };
            finding("clocksource", current, rec, status)
        }
        Err(e) => unknown("clocksource", short_err(&e), rec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
30 24 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=1024k
40 27 259:2 / /var/lib/ringmq rw,noatime shared:5 master:1 - xfs /dev/nvme0n1p2 rw,attr2,inode64
41 27 259:3 / /var/lib/ringmq\\040old rw,noatime - ext4 /dev/nvme1n1 rw
bogus line without separator
";

    #[test]
    fn mountinfo_fields_are_parsed_past_optional_fields() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 6, "the malformed line is skipped");
        let xfs = &m[4];
        assert_eq!((xfs.major, xfs.minor), (259, 2));
        assert_eq!(xfs.mount_point, "/var/lib/ringmq");
        assert_eq!(xfs.fs_type, "xfs");
        assert_eq!(xfs.source, "/dev/nvme0n1p2");
        assert!(xfs.has_option("noatime"));
        assert!(m[1].has_option("discard"), "super options count too");
    }

    #[test]
    fn mountinfo_unescapes_octal_escapes_in_mount_points() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m[5].mount_point, "/var/lib/ringmq old");
        assert_eq!(unescape_octal("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04", "a short escape is left alone");
    }

    #[test]
    fn mount_lookup_takes_the_longest_mount_point_on_a_path_boundary() {
        let m = parse_mountinfo(MOUNTINFO);
        let at = |p: &str| find_mount(&m, Path::new(p), None).map(|e| e.mount_point.clone());
        assert_eq!(at("/var/lib/ringmq/topic-0").as_deref(), Some("/var/lib/ringmq"));
        assert_eq!(at("/var/lib/ringmq").as_deref(), Some("/var/lib/ringmq"));
        assert_eq!(at("/var/lib/ringmq old/x").as_deref(), Some("/var/lib/ringmq old"));
        assert_eq!(at("/var/lib/ringmqx").as_deref(), Some("/"), "a name prefix is not a parent");
        assert_eq!(at("/tmp/tunecheck").as_deref(), Some("/"));
    }

    #[test]
    fn mount_lookup_prefers_the_last_stacked_mount_unless_the_device_says_otherwise() {
        let m = parse_mountinfo(MOUNTINFO);
        let shm = find_mount(&m, Path::new("/dev/shm/x"), None).expect("shm");
        assert_eq!(shm.super_options, vec!["rw", "size=1024k"], "the later mount is on top");
        let by_dev = find_mount(&m, Path::new("/dev/shm/x"), Some((0, 23))).expect("shm");
        assert_eq!(by_dev.super_options, vec!["rw", "size=24684084k"]);
    }

    #[test]
    fn device_numbers_split_into_major_and_minor() {
        assert_eq!(dev_major_minor(0xfe00), (254, 0));
        assert_eq!(dev_major_minor((259 << 8) | 2), (259, 2));
        // minor 300 spills into the high minor bits.
        let dev = ((300u64 & !0xff) << 12) | (300 & 0xff) | (8 << 8);
        assert_eq!(dev_major_minor(dev), (8, 300));
    }

    #[test]
    fn cmdline_stops_at_double_dash_and_keeps_bare_flags() {
        let p = parse_cmdline(
            "console=ttyS0 quiet isolcpus=managed_irq,domain,2-5 nohz_full=2-5 rcu_nocbs -- --init-arg isolcpus=9\n",
        );
        assert_eq!(cmdline_get(&p, "console"), Some(Some("ttyS0")));
        assert_eq!(cmdline_get(&p, "quiet"), Some(None));
        assert_eq!(cmdline_get(&p, "rcu_nocbs"), Some(None));
        assert_eq!(cmdline_get(&p, "isolcpus"), Some(Some("managed_irq,domain,2-5")), "after -- belongs to init");
        assert_eq!(cmdline_get(&p, "--init-arg"), None);
    }

    #[test]
    fn cmdline_quotes_group_values_with_spaces_and_last_one_wins() {
        let p = parse_cmdline("dyndbg=\"file foo.c +p\" \"x=y z\" nohz_full=1 nohz_full=3");
        assert_eq!(cmdline_get(&p, "dyndbg"), Some(Some("file foo.c +p")));
        assert_eq!(cmdline_get(&p, "x"), Some(Some("y z")));
        assert_eq!(cmdline_get(&p, "nohz_full"), Some(Some("3")));
    }

    #[test]
    fn isolcpus_flags_are_split_from_the_cpu_list() {
        assert_eq!(
            split_isolcpus("managed_irq,domain,2-5,8"),
            (vec!["managed_irq".to_string(), "domain".to_string()], "2-5,8".to_string())
        );
        assert_eq!(split_isolcpus("1,3"), (vec![], "1,3".to_string()));
        assert_eq!(split_isolcpus("nohz,N"), (vec!["nohz".to_string()], "N".to_string()));
    }

    #[test]
    fn cpu_lists_parse_ranges_strides_and_n() {
        assert_eq!(parse_cpu_list("0-2,5,7-8", None), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpu_list("0-7:2/4", None), Some(vec![0, 1, 4, 5]));
        assert_eq!(parse_cpu_list("2-N", Some(4)), Some(vec![2, 3, 4]));
        assert_eq!(parse_cpu_list("", None), Some(vec![]));
        assert_eq!(parse_cpu_list("(null)", None), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1", None), None);
        assert_eq!(parse_cpu_list("x", None), None);
        assert_eq!(parse_cpu_list("0-99999999999", None), None, "no giant ranges from a hostile cmdline");
        assert_eq!(format_cpu_list(&[8, 0, 1, 2, 5, 7]), "0-2,5,7-8");
        assert_eq!(format_cpu_list(&[]), "none");
    }

    #[test]
    fn hex_masks_parse_with_comma_groups() {
        assert_eq!(parse_hex_mask("3"), Some(vec![0, 1]));
        assert_eq!(parse_hex_mask("00000001,00000010"), Some(vec![4, 32]));
        assert_eq!(parse_hex_mask("zz"), None);
    }

    #[test]
    fn sysfs_choice_is_the_bracketed_word() {
        assert_eq!(selected_choice("always [madvise] never"), Some("madvise"));
        assert_eq!(selected_choice("none [mq-deadline] kyber bfq"), Some("mq-deadline"));
        assert_eq!(selected_choice("none"), None);
    }

    fn f(setting: &str, current: &str, recommended: &str, status: Status) -> Finding {
        finding(setting, current, recommended, status)
    }

    #[test]
    fn table_has_aligned_columns_and_a_summary() {
        let rows =
            vec![f("vm.swappiness", "60", "1", Status::Warn), f("io_uring_setup()", "works", "works", Status::Ok)];
        let mut out = Vec::new();
        print_table(&rows, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "SETTING           CURRENT  RECOMMENDED  STATUS");
        assert_eq!(lines[1], "----------------  -------  -----------  ------");
        assert_eq!(lines[2], "vm.swappiness     60       1            WARN");
        assert_eq!(lines[3], "io_uring_setup()  works    works        ok");
        assert_eq!(lines[4], "2 checks: 1 ok, 1 warn, 0 fatal");
    }

    #[test]
    fn table_wraps_long_cells_inside_their_column() {
        let long = "discard (synchronous TRIM when retention deletes segments) and more words to wrap";
        let rows = vec![f("data dir discard", long, "off", Status::Warn)];
        let mut out = Vec::new();
        print_table(&rows, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        let status_col = lines[0].find("STATUS").expect("header");
        assert!(lines.len() > 4, "{text}");
        assert_eq!(&lines[2][status_col..], "WARN", "status stays in its column on the first line:\n{text}");
        for l in &lines[3..lines.len() - 1] {
            assert!(
                l.starts_with(&" ".repeat("data dir discard".len())),
                "continuation lines leave the setting column blank:\n{text}"
            );
            assert!(l.chars().count() <= status_col, "no status on continuation lines:\n{text}");
        }
        let rejoined: Vec<&str> = lines[2..lines.len() - 1].iter().map(|l| l[18..].trim_end()).collect();
        assert!(rejoined.join(" ").starts_with(long.split(' ').next().expect("word")));
    }

    #[test]
    fn wrap_breaks_at_spaces_and_splits_overlong_words() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("", 4), vec![""]);
    }

    #[test]
    fn exit_code_is_non_zero_only_when_a_finding_is_fatal() {
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[f("a", "", "", Status::Ok), f("b", "", "", Status::Warn)]), 0);
        assert_eq!(exit_code(&[f("a", "", "", Status::Warn), f("b", "", "", Status::Fatal)]), 1);
    }

    #[test]
    fn memlock_below_512k_is_fatal_even_for_root_with_cap_ipc_lock() {
        assert_eq!(judge_memlock(Some(256 << 10), true, true, 2).status, Status::Fatal);
        assert_eq!(judge_memlock(Some(64 << 10), false, false, 1).status, Status::Fatal);
    }

    #[test]
    fn memlock_sizing_matches_the_runtime_formula() {
        // 8 MiB, 2 shards: 8 MiB / 10 * 9 / 6, page-rounded.
        assert_eq!(io_memory_per_shard(8 << 20, 2), (8u64 << 20) / 10 * 9 / 6 / 4096 * 4096);
        assert_eq!(io_memory_per_shard(1 << 40, 2), 10 << 20, "capped at 10 MiB");
        let full = memlock_for_full_io_memory(2);
        assert_eq!(io_memory_per_shard(full, 2), 10 << 20);
        assert!(io_memory_per_shard(full - 4096 * 20, 2) < 10 << 20);
    }

    #[test]
    fn memlock_is_judged_by_what_ringmq_would_get() {
        assert_eq!(judge_memlock(Some(8 << 20), false, false, 2).status, Status::Warn, "under 10 MiB per shard");
        assert_eq!(judge_memlock(Some(1 << 30), false, false, 2).status, Status::Ok);
        assert_eq!(judge_memlock(None, false, false, 64).status, Status::Ok);
        assert_eq!(judge_memlock(Some(8 << 20), true, true, 2).status, Status::Ok, "CAP_IPC_LOCK: not charged");
        assert_eq!(judge_memlock(Some(8 << 20), false, true, 2).status, Status::Warn, "root without CAP_IPC_LOCK");
    }

    #[test]
    fn dirty_thresholds_use_bytes_when_set_else_ratio_of_memory() {
        let gib24 = 24u64 << 30;
        let r = judge_dirty("vm.dirty_background", 10, 0, Some(gib24), 256 << 20, "");
        assert_eq!(r.status, Status::Warn);
        assert!(r.current.contains("10%"), "{}", r.current);
        let b = judge_dirty("vm.dirty_background", 0, 64 << 20, Some(gib24), 256 << 20, "");
        assert_eq!((b.status, b.current.as_str()), (Status::Ok, "64 MiB (vm.dirty_background_bytes)"));
        assert_eq!(judge_dirty("vm.dirty", 20, 0, None, 1 << 30, "").status, Status::Warn, "unknown memory");
    }

    #[test]
    fn human_bytes_picks_the_largest_whole_unit() {
        assert_eq!(human_bytes(512 << 10), "512 KiB");
        assert_eq!(human_bytes(8 << 20), "8 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100), "100 B");
    }

    fn scratch_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "ringmq-tune-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn empty_proc_and_sys_give_unknown_warnings_not_panics() {
        let root = scratch_dir("empty");
        let host = Host { proc_root: root.join("proc"), sys_root: root.join("sys") };
        let findings = check_on(&host, &CheckOptions { data_dir: root.join("data"), shards: 2 });
        for name in [
            "vm.swappiness",
            "THP enabled",
            "cpufreq governor",
            "clocksource",
            "isolcpus",
            "data dir filesystem",
            "block device",
            "IRQ affinity",
        ] {
            let row =
                findings.iter().find(|f| f.setting == name).unwrap_or_else(|| panic!("no row {name}: {findings:#?}"));
            assert_eq!(row.status, Status::Warn, "{row:?}");
            assert!(row.current.starts_with("unknown"), "{row:?}");
        }
        assert!(root.join("data").is_dir(), "the data dir is created for the probe");
        assert_eq!(std::fs::read_dir(root.join("data")).expect("read").count(), 0, "the probe file is removed");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn fake_sysfs_values_are_judged() {
        let root = scratch_dir("fake");
        let w = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        w("proc/sys/vm/swappiness", "1\n");
        w("proc/sys/vm/max_map_count", "65530\n");
        w("proc/cmdline", "ro isolcpus=managed_irq,domain,2-3 nohz_full=2-3 -- isolcpus=0\n");
        w("proc/irq/default_smp_affinity", "3\n");
        w("proc/irq/24/effective_affinity_list", "2\n");
        w("sys/devices/system/cpu/online", "0-3\n");
        w("sys/devices/system/cpu/isolated", "2-3\n");
        w("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n");
        w("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "powersave\n");
        w("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n");
        let host = Host { proc_root: root.join("proc"), sys_root: root.join("sys") };
        let findings = check_on(&host, &CheckOptions { data_dir: root.join("data"), shards: 2 });
        let row = |name: &str| {
            findings.iter().find(|f| f.setting == name).cloned().unwrap_or_else(|| panic!("no row {name}"))
        };
        assert_eq!(row("vm.swappiness").status, Status::Ok);
        assert_eq!(row("vm.max_map_count").status, Status::Warn);
        assert_eq!(row("THP enabled").status, Status::Warn);
        assert_eq!(
            (row("isolcpus").current.as_str(), row("isolcpus").status),
            ("2-3 (managed_irq,domain)", Status::Ok)
        );
        assert_eq!(row("nohz_full").status, Status::Ok);
        assert_eq!(row("rcu_nocbs").status, Status::Ok, "nohz_full offloads RCU callbacks");
        assert_eq!(row("IRQ affinity").status, Status::Ok);
        assert!(row("IRQ affinity").current.contains("1 IRQs on isolated"), "{:?}", row("IRQ affinity"));
        let gov = row("cpufreq governor");
        assert_eq!((gov.current.as_str(), gov.status), ("performance on 0; powersave on 1", Status::Warn));
        let _ = std::fs::remove_dir_all(&root);
    }
}
