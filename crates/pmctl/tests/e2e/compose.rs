//! `compose/` and the Dockerfiles, checked without a container engine (none runs here):
//! the compose file loaded by compose-go — the library `docker compose config` runs — and
//! compared with what pmctl really reads and the files really in the repository; the
//! Dockerfiles linted by hadolint. The stack itself is never started by these tests
//! (docs/deploy.md says so).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::deploy::{env_vars_of, read, root};

/// The values the compose file requires from compose/.env.
const REQUIRED: [(&str, &str); 3] = [
    ("POSTGRES_PASSWORD", "pg-secret"),
    ("PM_WEBHOOK_SECRETS", "whsec_compose"),
    ("GRAFANA_ADMIN_PASSWORD", "grafana-secret"),
];

/// `compose/validate` (Go) on the compose file, with `env` as the environment.
fn load(env: &[(&str, &str)]) -> Output {
    let file = root().join("compose/docker-compose.yml");
    let mut cmd = Command::new("go");
    cmd.args(["run", "."])
        .arg(&file)
        .current_dir(root().join("compose/validate"))
        .stdin(Stdio::null());
    for (name, _) in REQUIRED {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run go ({e}): install Go 1.24 or newer"))
}

fn project() -> Value {
    let out = load(&REQUIRED);
    assert!(
        out.status.success(),
        "compose-go refused the file:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the resolved project as JSON")
}

#[test]
fn the_compose_file_loads_as_docker_compose_reads_it_and_runs_what_pmctl_has() {
    let project = project();
    let services = project["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "api",
            "grafana",
            "ingest",
            "kafka",
            "migrate",
            "postgres",
            "prometheus",
            "simulator"
        ])
    );
    for (name, service) in services {
        // Every pmctl service runs a real subcommand with flags it has, and sets only
        // variables that subcommand reads.
        if service["image"] == "payment-manager/pmctl:local" {
            let command: Vec<&str> = service["command"]
                .as_array()
                .expect("a command")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let subcommand = command[0];
            let help = crate::process::run(&[subcommand, "--help"], &[]);
            assert!(help.status.success(), "{name}: pmctl {subcommand}");
            let help = String::from_utf8_lossy(&help.stdout).into_owned();
            for flag in command.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    help.contains(&format!("{flag} ")),
                    "{name}: {subcommand} has no {flag}"
                );
            }
            let reads: BTreeSet<String> = env_vars_of(subcommand)
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            for var in service["environment"]
                .as_object()
                .expect("environment")
                .keys()
            {
                assert!(
                    reads.contains(var),
                    "{name}: pmctl {subcommand} does not read {var}"
                );
            }
            assert_eq!(service["read_only"], true, "{name}");
            assert_eq!(service["cap_drop"], serde_json::json!(["ALL"]), "{name}");
        }
        // Published ports are on loopback only.
        for port in service["ports"].as_array().into_iter().flatten() {
            assert_eq!(port["host_ip"], "127.0.0.1", "{name}: {port}");
        }
        // Bind mounts name files of the repository (the API key is the operator's to make).
        for volume in service["volumes"].as_array().into_iter().flatten() {
            if volume["type"] == "bind" {
                let source = volume["source"].as_str().expect("source");
                if !source.contains("/compose/secrets/") {
                    assert!(
                        Path::new(source).exists(),
                        "{name}: {source} does not exist"
                    );
                }
            }
        }
    }
    // The services start after the schema is migrated and the broker is up.
    let api = &services["api"]["depends_on"];
    assert_eq!(
        api["migrate"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(api["kafka"]["condition"], "service_healthy");
    assert_eq!(
        services["migrate"]["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    // The stack's Prometheus loads the same rules as the single-server profile, and Grafana
    // the same dashboards, from where deploy/ keeps them.
    let prometheus = read(&root().join("compose/prometheus.yml"));
    for job in ["job_name: pm-api", "job_name: pm-ingest", "rules/*.yml"] {
        assert!(prometheus.contains(job), "compose/prometheus.yml: {job}");
    }
    let datasource = read(&root().join("compose/grafana/datasource.yml"));
    assert!(datasource.contains("uid: pm-prometheus"), "{datasource}");
}

#[test]
fn the_compose_file_refuses_to_start_without_its_secrets() {
    let out = load(&[]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("POSTGRES_PASSWORD") && error.contains("compose/.env"),
        "{error}"
    );
}

#[test]
fn the_dockerfiles_pass_hadolint_and_run_as_a_user() {
    let lint = |files: &[&Path]| {
        Command::new(root().join("scripts/hadolint.sh"))
            .args(files)
            .current_dir(root())
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/hadolint.sh")
    };
    let ours = [
        root().join("Dockerfile"),
        root().join("compose/postgres/Dockerfile"),
    ];
    let out = lint(&ours.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The linter does find what it should (a test of the test).
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian\nRUN apt-get update && apt-get install -y curl\n",
    )
    .expect("write");
    let out = lint(&[&bad]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && said.contains("DL3008"), "{said}");

    let dockerfile = read(&root().join("Dockerfile"));
    let user = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER in the runtime stage");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "the image runs as {user}"
    );
}
