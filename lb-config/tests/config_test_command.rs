//! `xdirectord -t`: what it prints and the status it returns.

use std::ffi::OsStr;
use std::path::Path;

use lb_config::testing::StaticEnvironment;
use lb_config::{check_config_with, find_and_load_with};

fn run(arg: &Path) -> (i32, String) {
    let mut out = Vec::new();
    let status = check_config_with(
        Some(arg.as_os_str()),
        &StaticEnvironment::default(),
        &mut out,
        77,
    );
    (status, String::from_utf8(out).unwrap())
}

#[test]
fn valid_files_exit_0_with_their_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.cf");
    std::fs::write(
        &path,
        "checkcount=2\nvirtual=192.0.2.1:80\n\treal=192.0.2.2:80 gate\n\tscheduler=Wrr\n",
    )
    .unwrap();
    let (status, out) = run(&path);
    assert_eq!(status, 0);
    let p = path.display();
    assert_eq!(
        out,
        format!(
            "Warning [77] reading file {p} at line 1: checkcount option is deprecated and slated for removal.  please see 'failurecount'\n\
             Warning [77] reading file {p} at line 4: scheduler = Wrr read as rr\n"
        )
    );
}

#[test]
fn invalid_files_exit_2_after_the_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.cf");
    std::fs::write(&path, "supervised\nbogus\n").unwrap();
    let (status, out) = run(&path);
    assert_eq!(status, 2);
    let p = path.display();
    assert_eq!(
        out,
        format!(
            "Warning [77] reading file {p} at line 1: please update your config not to use a bare supervised directive\n\
             Error [77] reading file {p} at line 2: Unknown command bogus\n \n"
        )
    );
}

#[test]
fn missing_files_exit_1() {
    let (status, out) = run(Path::new("/nonexistent/xdirectord-test.cf"));
    assert_eq!(status, 1);
    assert_eq!(
        out,
        "Config file /nonexistent/xdirectord-test.cf not found\n"
    );
}

#[test]
fn the_name_comes_from_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.cf");
    std::fs::write(&path, "").unwrap();
    let config = find_and_load_with(Some(path.as_os_str()), &StaticEnvironment::default()).unwrap();
    assert_eq!(config.name, "web.cf");
    assert_eq!(config.path, path);
    assert!(config.virtuals.is_empty());
    let missing = find_and_load_with(
        Some(OsStr::new("/nonexistent/x.cf")),
        &StaticEnvironment::default(),
    );
    assert_eq!(missing.unwrap_err().exit_code(), 1);
}

#[test]
fn unreadable_files_are_whole_file_errors() {
    // A directory passes no lookup, so read one through load_with directly.
    let dir = tempfile::tempdir().unwrap();
    let err = lb_config::load_with(dir.path(), &StaticEnvironment::default()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.render(5),
        format!("Error [5]: can not open file {}\n", dir.path().display())
    );
}
