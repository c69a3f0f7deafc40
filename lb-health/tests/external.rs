//! external and external-perl checks running real scripts written to a temporary directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{check_once, negotiate, tcp_virtual};
use lb_health::{CheckType, Family, Service, VirtualAddress};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn external(command: &Path, check_type: CheckType) -> lb_health::CheckSpec {
    let mut spec = negotiate("10.0.0.7:8080".parse().unwrap(), Service::None);
    spec.virtual_address = tcp_virtual("192.0.2.1:80");
    spec.check_type = check_type;
    spec.check_command = command.to_str().unwrap().to_owned();
    spec
}

#[tokio::test]
async fn exit_status_decides_and_arguments_are_ldirectords() {
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let ok = script(
        dir.path(),
        "ok.sh",
        &format!("#!/bin/sh\necho \"$@\" > {}\nexit 0\n", args_file.display()),
    );
    let outcome = check_once(external(&ok, CheckType::External)).await;
    assert!(outcome.up, "{outcome:?}");
    assert_eq!(
        std::fs::read_to_string(&args_file).unwrap(),
        "192.0.2.1 80 10.0.0.7 8080\n"
    );

    let fail = script(dir.path(), "fail.sh", "#!/bin/sh\nexit 3\n");
    let outcome = check_once(external(&fail, CheckType::External)).await;
    assert!(!outcome.up);
    assert_eq!(&*outcome.reason, "exit status 3");
}

#[tokio::test]
async fn fwmark_and_ipv6_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let ok = script(
        dir.path(),
        "ok.sh",
        &format!("#!/bin/sh\necho \"$@\" > {}\n", args_file.display()),
    );
    let mut spec = external(&ok, CheckType::External);
    spec.virtual_address = VirtualAddress::Fwmark {
        mark: 42,
        family: Family::Inet,
    };
    spec.real = "[2001:db8::9]:443".parse().unwrap();
    assert!(check_once(spec).await.up);
    assert_eq!(
        std::fs::read_to_string(&args_file).unwrap(),
        "42 0 [2001:db8::9] 443\n"
    );
}

#[tokio::test]
async fn hung_command_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let hang = script(
        dir.path(),
        "hang.sh",
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    );
    let mut spec = external(&hang, CheckType::External);
    spec.check_timeout = Duration::from_millis(500);
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("timed out"), "{outcome:?}");
    // The command got SIGTERM: it is gone within a few seconds.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the check command {pid} was not killed");
}

#[tokio::test]
async fn missing_command_is_down() {
    let outcome = check_once(external(
        Path::new("/nonexistent/check"),
        CheckType::External,
    ))
    .await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("cannot run"), "{outcome:?}");
}

#[tokio::test]
async fn perl_scripts_exit_die_and_fall_through() {
    let dir = tempfile::tempdir().unwrap();
    // No #! line and not executable: ldirectord evals the file, it never executes it.
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let up = write(
        "up.pl",
        "my ($vip, $vport, $rip, $rport) = @ARGV;\nexit($rip eq '10.0.0.7' && $rport == 8080 ? 0 : 1);\n",
    );
    let outcome = check_once(external(&up, CheckType::ExternalPerl)).await;
    assert!(outcome.up, "{outcome:?}");

    let down = write("down.pl", "exit(2);\n");
    assert!(
        !check_once(external(&down, CheckType::ExternalPerl))
            .await
            .up
    );

    let dies = write("dies.pl", "die \"broken\\n\";\n");
    assert!(
        !check_once(external(&dies, CheckType::ExternalPerl))
            .await
            .up
    );

    let falls = write("falls.pl", "my $x = 1;\n");
    assert!(
        check_once(external(&falls, CheckType::ExternalPerl))
            .await
            .up
    );
}
