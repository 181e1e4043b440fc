//! The command line as a user meets it: bad flags, an unusable data dir, and
//! `ringmq tune check`.

mod common;

use std::process::Command;

use common::*;

fn ringmq(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(broker_bin()).args(args).output().expect("run ringmq");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_flag_is_refused_with_its_name_and_exit_2() {
    let (code, _, err) = ringmq(&["serve", "--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn bad_flag_values_are_refused_with_the_setting_named() {
    for (flag, value, name) in [
        ("--flush", "sometimes", "flush"),
        ("--cores", "999", "cores"),
        ("--listen", "not-an-address", "listen"),
        ("--segment-bytes", "10", "segment_bytes"),
    ] {
        let (code, _, err) = ringmq(&["serve", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(name), "{flag} {value}: {err}");
    }
}

#[test]
fn data_dir_in_memory_is_refused_at_start_with_a_one_line_reason() {
    let dir = tempfile::Builder::new().prefix("ringmq-tmpfs-").tempdir_in("/dev/shm").expect("tmpfs dir in /dev/shm");
    let (code, out, err) = ringmq(&[
        "serve",
        "--data-dir",
        dir.path().to_str().expect("path"),
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "off",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!out.contains("ringmq ready"), "must not start: {out}");
    let reason = err.lines().find(|l| l.contains("O_DIRECT")).unwrap_or_else(|| panic!("no O_DIRECT line in: {err}"));
    assert!(reason.contains("tmpfs"), "{reason}");
}

#[test]
fn data_dir_that_is_a_file_is_refused() {
    let dir = test_tempdir("cli");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").expect("file");
    let (code, _, err) =
        ringmq(&["serve", "--data-dir", file.to_str().expect("path"), "--listen", "127.0.0.1:0", "--metrics", "off"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("data dir"), "{err}");
}

#[test]
fn tune_check_prints_the_table_and_passes_on_a_disk_data_dir() {
    let dir = test_tempdir("tune");
    let (code, out, err) = ringmq(&["tune", "check", "--data-dir", dir.path().to_str().expect("path")]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("SETTING"), "{out}");
    for row in ["io_uring_setup()", "O_DIRECT on data dir", "RLIMIT_MEMLOCK", "vm.max_map_count"] {
        assert!(out.contains(row), "missing row {row}:\n{out}");
    }
    assert!(out.contains(" 0 fatal"), "{out}");
}

#[test]
fn tune_check_fails_on_a_data_dir_in_memory() {
    let dir = tempfile::Builder::new().prefix("ringmq-tmpfs-").tempdir_in("/dev/shm").expect("tmpfs dir in /dev/shm");
    let (code, out, _) = ringmq(&["tune", "check", "--data-dir", dir.path().to_str().expect("path")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l.contains("O_DIRECT on data dir") && l.contains("FATAL")), "{out}");
}
