//! `oxitraffic healthcheck` and the command line, against the real binary and a real server:
//! the exit statuses a container runtime acts on.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{PgCluster, Site, Tracker, TrackerConfig};

/// Runs the binary with `args` and only `env` in its environment.
fn oxitraffic(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxitraffic"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run oxitraffic")
}

/// A complete configuration whose `socket_address` is `address`: the healthcheck loads the
/// same settings as the server, so it needs the required ones too.
fn env_for(address: &str, cluster: &PgCluster, database: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OXITRAFFIC_SOCKET_ADDRESS", address.to_string()),
        ("OXITRAFFIC_BASE_URL", "http://127.0.0.1:1".to_string()),
        (
            "OXITRAFFIC_TRACKED_ORIGIN",
            "http://127.0.0.1:2".to_string(),
        ),
        ("OXITRAFFIC_DB__HOST", cluster.host()),
        ("OXITRAFFIC_DB__USERNAME", common::pg::USER.to_string()),
        ("OXITRAFFIC_DB__DATABASE", database.to_string()),
    ]
}

fn healthcheck(env: &[(&str, String)]) -> (Option<i32>, String) {
    let output = oxitraffic(&["healthcheck"], env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn unknown_arguments_print_the_usage_and_exit_2() {
    for args in [&["serve"][..], &["healthcheck", "now"], &["--port", "80"]] {
        let output = oxitraffic(args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("unexpected arguments `{}`", args.join(" ")))
                && stderr.contains("usage: oxitraffic"),
            "{stderr}"
        );
    }
    let output = oxitraffic(&["--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("oxitraffic healthcheck"));
}

#[test]
fn a_configuration_that_does_not_load_is_unhealthy_and_says_why() {
    let (code, output) = healthcheck(&[]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("oxitraffic healthcheck: missing required setting `base_url`"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_health_through_a_database_outage_and_a_shutdown() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let site = Site::start();
    let mut tracker = Tracker::start(&TrackerConfig::new(&cluster, &database, &site.origin()));
    tracker.wait_for_health(200, Duration::from_secs(20)).await;
    let env = env_for(&tracker.addr.to_string(), &cluster, &database);

    let (code, output) = healthcheck(&env);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(
        output.trim(),
        format!(
            "oxitraffic healthcheck: http://{}/health answered 200 OK",
            tracker.addr
        )
    );

    cluster.stop();
    tracker.wait_for_health(503, Duration::from_secs(20)).await;
    let (code, output) = healthcheck(&env);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("answered 503 Service Unavailable"),
        "{output}"
    );

    cluster.restart();
    tracker.wait_for_health(200, Duration::from_secs(20)).await;
    assert_eq!(healthcheck(&env).0, Some(0));

    tracker.terminate(Duration::from_secs(30));
    let (code, output) = healthcheck(&env);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("cannot connect to the server"), "{output}");
}

/// A server listening on a wildcard address is checked over loopback, on the port the
/// configuration names (the usual container setting is `0.0.0.0:80`).
#[tokio::test(flavor = "multi_thread")]
async fn wildcard_listen_addresses_are_checked_over_loopback() {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let site = Site::start();
    for wildcard in ["0.0.0.0", "[::]"] {
        let config = TrackerConfig::new(cluster, &database, &site.origin())
            .set("OXITRAFFIC_SOCKET_ADDRESS", format!("{wildcard}:0"));
        let tracker = Tracker::start(&config);
        tracker.wait_for_health(200, Duration::from_secs(20)).await;
        assert!(tracker.addr.ip().is_unspecified(), "{}", tracker.addr);
        let env = env_for(&tracker.addr.to_string(), cluster, &database);
        let (code, output) = healthcheck(&env);
        assert_eq!(code, Some(0), "{wildcard}: {output}");
    }
}
