//! The single-server profile of `deploy/` (docs/deploy.md), checked with the tools that
//! will run it: the systemd units pass `systemd-analyze verify` and its offline security
//! review, carry the hardening and the signal handling the services rely on, and load only
//! credentials pmctl reads; the nginx site passes `nginx -t` inside Debian's stock
//! nginx.conf and, served for real in front of stub upstreams, routes, refuses, limits and
//! forwards what it should; `pmctl.env.example` documents every variable the units'
//! subcommands read. The lists they are compared with come from the built binary's
//! `--help` and from the source, never from a copy kept here. A missing tool fails the
//! test saying what to install (`scripts/install-deps.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process;

/// The path the units run pmctl from; the tests put the built binary there in copies.
const BINARY: &str = "/usr/local/bin/pmctl";
/// The host name the nginx site is written for, a placeholder to replace.
const HOST: &str = "pay.example.com";

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs `program` to its end; its absence fails the test saying what to install.
fn run_tool(program: &str, args: &[&str], envs: &[(&str, &str)], install: &str) -> Output {
    Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install {install}"))
}

/// `s` with the one occurrence of `from` replaced; a file whose shape changed fails here.
fn replace_once(s: &str, from: &str, to: &str) -> String {
    assert_eq!(
        s.matches(from).count(),
        1,
        "expected {from:?} exactly once in:\n{s}"
    );
    s.replacen(from, to, 1)
}

/// The `[env: NAME…]` variables of `pmctl <subcommand> --help`, each with whether clap
/// hides its value (a secret: `[env: NAME]` rather than `[env: NAME=value]`).
pub(crate) fn env_vars_of(subcommand: &str) -> Vec<(String, bool)> {
    let out = process::run(&[subcommand, "--help"], &[]);
    assert!(
        out.status.success(),
        "pmctl {subcommand} --help: {}",
        process::text(&out)
    );
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let vars: Vec<(String, bool)> = help
        .split("[env:")
        .skip(1)
        .map(|rest| {
            let rest = rest.trim_start();
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            let end = end.unwrap_or(rest.len());
            (rest[..end].to_owned(), !rest[end..].starts_with('='))
        })
        .collect();
    assert!(
        vars.iter().any(|(v, _)| v == "PM_LOG"),
        "no [env: …] found in pmctl {subcommand} --help:\n{help}"
    );
    vars
}

/// The default of `--flag` in `pmctl <subcommand> --help`.
fn help_default(subcommand: &str, flag: &str) -> String {
    let out = process::run(&[subcommand, "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = &help[help
        .find(flag)
        .unwrap_or_else(|| panic!("{flag} in --help"))..];
    let start = after.find("[default: ").expect("a default") + "[default: ".len();
    after[start..start + after[start..].find(']').unwrap()].to_owned()
}

// ---------------------------------------------------------------------------------------
// systemd

/// One unit file: `(section, key, value)` in file order (keys may repeat).
struct Unit {
    name: String,
    text: String,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value of a key set exactly once.
    fn one(&self, section: &str, key: &str) -> &str {
        match self.values(section, key).as_slice() {
            [v] => v,
            other => panic!(
                "{}: [{section}] {key}= set {} times",
                self.name,
                other.len()
            ),
        }
    }
}

/// Every file of deploy/systemd/.
fn units() -> Vec<Unit> {
    let dir = root().join("deploy/systemd");
    let mut units: Vec<Unit> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .map(|path| {
            let text = read(&path);
            let (mut section, mut entries) = (String::new(), Vec::new());
            for line in text.lines().map(str::trim) {
                assert!(
                    !line.ends_with('\\'),
                    "{}: continuation lines are not parsed here",
                    path.display()
                );
                if line.is_empty() || line.starts_with('#') {
                } else if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = s.to_owned();
                } else {
                    let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                    entries.push((section.clone(), k.to_owned(), v.to_owned()));
                }
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            Unit {
                name,
                text,
                entries,
            }
        })
        .collect();
    units.sort_by(|a, b| a.name.cmp(&b.name));
    units
}

/// The services and the subcommand each runs.
const SERVICES: [(&str, &str); 4] = [
    ("pmctl-api.service", "serve-api"),
    ("pmctl-ingest.service", "serve-ingest --sink http"),
    ("pmctl-migrate.service", "migrate"),
    ("pmctl-partition-maintain.service", "partition-maintain"),
];

fn unit<'a>(units: &'a [Unit], name: &str) -> &'a Unit {
    units
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("deploy/systemd/{name} is missing"))
}

fn systemd_analyze(args: &[&str], manpath: &Path) -> Output {
    run_tool(
        "systemd-analyze",
        args,
        &[("MANPATH", process::path(manpath))],
        "systemd (Debian's `systemd` package provides /usr/bin/systemd-analyze)",
    )
}

#[test]
fn the_units_pass_systemd_analyze_verify_and_its_security_review() {
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's binary exists and that every man: page of
    // Documentation= does: the built pmctl, and the pages it generates.
    let man = dir.path().join("man");
    let out = process::run(&["man", "--out-dir", process::path(&man.join("man1"))], &[]);
    assert!(out.status.success(), "pmctl man: {}", process::text(&out));
    let units = units();
    let copies: Vec<PathBuf> = units
        .iter()
        .map(|u| {
            let copy = dir.path().join(&u.name);
            std::fs::write(&copy, u.text.replace(BINARY, env!("CARGO_BIN_EXE_pmctl"))).unwrap();
            copy
        })
        .collect();
    let mut args = vec!["verify", "--man=yes"];
    args.extend(copies.iter().map(|c| process::path(c)));
    let out = systemd_analyze(&args, &man);
    // An unknown or misspelt setting is only a warning (exit code 0): any output fails.
    assert!(
        out.status.success() && process::text(&out).trim().is_empty(),
        "systemd-analyze verify ({}):\n{}",
        out.status,
        process::text(&out)
    );
    for (name, _) in SERVICES {
        let copy = dir.path().join(name);
        // Exposure in tenths: 20 is 2.0, the top of the "OK" band.
        let out = systemd_analyze(
            &[
                "security",
                "--offline=yes",
                "--threshold=20",
                "--no-pager",
                process::path(&copy),
            ],
            &man,
        );
        assert!(
            out.status.success(),
            "{name}: exposure above 2.0:\n{}",
            process::text(&out)
        );
    }
}

#[test]
fn the_services_are_hardened_and_run_the_right_subcommand() {
    let units = units();
    let expected = [
        ("User", "pmctl"),
        ("EnvironmentFile", "/etc/pmctl/pmctl.env"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ];
    for (name, subcommand) in SERVICES {
        let u = unit(&units, name);
        for (key, value) in expected {
            assert_eq!(u.one("Service", key), value, "{name}: {key}=");
        }
        assert!(
            u.values("Service", "SystemCallFilter")
                .contains(&"@system-service"),
            "{name}: SystemCallFilter=@system-service"
        );
        assert_eq!(
            u.one("Service", "ExecStart"),
            format!("{BINARY} {subcommand}"),
            "{name}"
        );
    }
}

#[test]
fn the_servers_restart_on_failure_reload_on_sighup_and_get_time_to_drain() {
    let units = units();
    // SIGTERM drains for --shutdown-timeout, then the runtime gets 5 s (main.rs).
    let drain = humantime::parse_duration(&help_default("serve-api", "--shutdown-timeout"))
        .expect("a duration")
        + Duration::from_secs(5);
    for name in ["pmctl-api.service", "pmctl-ingest.service"] {
        let u = unit(&units, name);
        assert_eq!(u.one("Service", "Restart"), "on-failure", "{name}");
        assert_eq!(u.one("Service", "KillSignal"), "SIGTERM", "{name}");
        assert_eq!(
            u.one("Service", "ExecReload"),
            "/bin/kill -HUP $MAINPID",
            "{name}"
        );
        let stop = humantime::parse_duration(u.one("Service", "TimeoutStopSec")).unwrap();
        assert!(
            stop > drain,
            "{name}: TimeoutStopSec {stop:?} must exceed {drain:?}"
        );
        // systemd 252 copies credentials once, at start: a secret that SIGHUP re-reads
        // must be a file read in place.
        assert!(
            u.values("Service", "Environment")
                .contains(&"PM_WEBHOOK_SECRETS_FILE=/etc/pmctl/webhook-secrets"),
            "{name}: the webhook secrets file"
        );
    }
    let api = unit(&units, "pmctl-api.service");
    for key in ["After", "Wants"] {
        assert!(
            api.one("Unit", key).contains("pmctl-migrate.service"),
            "api {key}="
        );
    }
    assert_eq!(
        unit(&units, "pmctl-migrate.service").one("Service", "Type"),
        "oneshot"
    );
    let timer = unit(&units, "pmctl-partition-maintain.timer");
    assert_eq!(timer.one("Timer", "OnCalendar"), "daily");
    assert_eq!(timer.one("Timer", "Persistent"), "true");
    let delay = humantime::parse_duration(timer.one("Timer", "RandomizedDelaySec")).unwrap();
    assert!(
        delay >= Duration::from_secs(60),
        "RandomizedDelaySec {delay:?}"
    );
}

/// The credential names pmctl's source reads (`credential: "…"`, `credential("…")`).
fn credentials_pmctl_reads() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = read(&path);
                for pattern in ["credential: \"", "credential(\""] {
                    for rest in text.split(pattern).skip(1) {
                        out.insert(rest[..rest.find('"').unwrap()].to_owned());
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut names,
    );
    assert!(
        names.contains("database-url"),
        "the source scan found {names:?}"
    );
    names
}

#[test]
fn the_units_load_only_credentials_pmctl_reads_and_set_no_secret() {
    let known = credentials_pmctl_reads();
    let secret_vars: BTreeSet<String> = ["serve-api", "serve-ingest", "migrate"]
        .iter()
        .flat_map(|s| env_vars_of(s))
        .filter_map(|(v, secret)| secret.then_some(v))
        .collect();
    let units = units();
    let needs = [
        (
            "pmctl-api.service",
            &["database-url", "database-password", "internal-token"][..],
        ),
        ("pmctl-ingest.service", &["internal-token"][..]),
        (
            "pmctl-migrate.service",
            &["database-url", "database-password"][..],
        ),
        (
            "pmctl-partition-maintain.service",
            &["database-url", "database-password"][..],
        ),
    ];
    for (name, needed) in needs {
        let u = unit(&units, name);
        let mut loaded = Vec::new();
        for value in u.values("Service", "LoadCredential") {
            let (id, path) = value.split_once(':').expect("LoadCredential=NAME:PATH");
            assert!(
                known.contains(id),
                "{name}: pmctl reads no credential {id:?} (it reads {known:?})"
            );
            assert!(
                path.starts_with("/etc/pmctl/credentials/"),
                "{name}: {path}"
            );
            loaded.push(id);
        }
        for id in needed {
            assert!(
                loaded.contains(id),
                "{name}: LoadCredential={id}:… is missing"
            );
        }
        for value in u.values("Service", "Environment") {
            let var = value.split('=').next().unwrap();
            assert!(
                !secret_vars.contains(var),
                "{name}: secret {var} set in the unit"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// nginx

/// The default of `--max-body-bytes`.
fn max_body_bytes() -> usize {
    let default = help_default("serve-ingest", "--max-body-bytes");
    default.parse().expect("a number")
}

/// The API's largest operator body, `MAX_COMMAND_BODY` in pm-api (`a * b` or a number).
fn max_command_body() -> usize {
    let source = read(&root().join("crates/pm-api/src/routes.rs"));
    let decl = "const MAX_COMMAND_BODY: usize = ";
    let rest = &source[source.find(decl).expect("MAX_COMMAND_BODY in pm-api") + decl.len()..];
    let number = |n: &str| {
        n.trim()
            .replace('_', "")
            .parse::<usize>()
            .expect("a number")
    };
    rest[..rest.find(';').unwrap()]
        .split('*')
        .map(number)
        .product()
}

/// deploy/nginx/pmctl.conf, edited by `edits` (each `(from, to)` found exactly once),
/// inside Debian's stock /etc/nginx/nginx.conf, with everything nginx reads or writes in a
/// temporary prefix and a certificate for [`HOST`] from a test CA.
struct NginxConf {
    dir: tempfile::TempDir,
    conf: PathBuf,
    ca_pem: String,
}

impl NginxConf {
    fn new(main_prelude: &str, edits: &[(&str, String)]) -> NginxConf {
        let stock = Path::new("/etc/nginx/nginx.conf");
        assert!(stock.exists(), "no {}: {NGINX}", stock.display());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().display().to_string();
        // A live nginx's worker reads the webroot in here.
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.path().join("www/.well-known/acme-challenge")).unwrap();
        let ca = pm_tls::testing::TestCa::new("pm-test-ca");
        let files = ca.server(&[HOST]).write(dir.path(), "site");
        let live = format!("/etc/letsencrypt/live/{HOST}");
        let mut site = read(&root().join("deploy/nginx/pmctl.conf"));
        for (from, to) in [
            (
                format!("{live}/fullchain.pem"),
                process::path(&files.cert).to_owned(),
            ),
            (
                format!("{live}/privkey.pem"),
                process::path(&files.key).to_owned(),
            ),
            ("/var/log/nginx/".to_owned(), format!("{p}/")),
            ("root /var/www/html;".to_owned(), format!("root {p}/www;")),
        ] {
            site = replace_once(&site, &from, &to);
        }
        for (from, to) in edits {
            site = replace_once(&site, from, to);
        }
        std::fs::write(dir.path().join("pmctl.conf"), site).unwrap();

        let temp_paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map(|t| format!("\n\t{t}_temp_path {p}/{t};"))
            .concat();
        let mut conf = read(stock);
        for (from, to) in [
            ("pid /run/nginx.pid;", format!("pid {p}/nginx.pid;")),
            ("/var/log/nginx/error.log", format!("{p}/error.log")),
            ("/var/log/nginx/access.log", format!("{p}/access.log")),
            (
                "include /etc/nginx/sites-enabled/*;",
                format!("include {p}/pmctl.conf;{temp_paths}"),
            ),
        ] {
            conf = replace_once(&conf, from, &to);
        }
        // Debian's modules-enabled/*.conf load `modules/…`, relative to the prefix.
        std::os::unix::fs::symlink("/usr/share/nginx/modules", dir.path().join("modules")).unwrap();
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, format!("{main_prelude}{conf}")).unwrap();
        NginxConf {
            conf: conf_path,
            ca_pem: ca.cert_pem(),
            dir,
        }
    }

    fn nginx(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new("nginx");
        let prefix = format!("{}/", self.dir.path().display());
        cmd.args(["-c", process::path(&self.conf), "-p", &prefix])
            .args(extra);
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// What to do when nginx is missing.
const NGINX: &str = "install nginx-light (scripts/install-deps.sh does)";

#[test]
fn the_nginx_site_passes_nginx_t_in_debians_stock_configuration() {
    let conf = NginxConf::new("", &[]);
    let out = conf
        .nginx(&["-t"])
        .output()
        .unwrap_or_else(|e| panic!("nginx: {e}: {NGINX}"));
    let text = process::text(&out);
    assert!(
        out.status.success() && text.contains("test is successful") && !text.contains("[warn]"),
        "nginx -t ({}):\n{text}",
        out.status
    );
}

/// A request as a stub upstream received it.
#[derive(Debug, Clone)]
struct Received {
    uri: String,
    headers: axum::http::HeaderMap,
    body_len: usize,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// An upstream on a free port that records every request and answers 202 with `name`.
async fn stub(name: &'static str) -> (u16, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Log::default();
    let seen = log.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let (uri, headers) = (parts.uri.to_string(), parts.headers);
            let body_len = body.len();
            seen.lock().unwrap().push(Received {
                uri,
                headers,
                body_len,
            });
            (axum::http::StatusCode::ACCEPTED, name)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, log)
}

/// The site served by a real nginx on free loopback ports, with stub upstreams in place of
/// serve-ingest and serve-api; nginx stops when this is dropped.
struct LiveSite {
    conf: NginxConf,
    nginx: std::process::Child,
    http_port: u16,
    https_port: u16,
    ingest: Log,
    api: Log,
    client: reqwest::Client,
}

impl Drop for LiveSite {
    fn drop(&mut self) {
        // One process (`master_process off`): no orphaned worker keeps the ports.
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

impl LiveSite {
    async fn start() -> LiveSite {
        let ((ingest_port, ingest), (api_port, api)) = (stub("ingest").await, stub("api").await);
        let (http_port, https_port) = (process::free_port(), process::free_port());
        let conf = NginxConf::new(
            "daemon off;\nmaster_process off;\n",
            &[
                (
                    "server 127.0.0.1:3001;",
                    format!("server 127.0.0.1:{ingest_port};"),
                ),
                (
                    "server 127.0.0.1:3000;",
                    format!("server 127.0.0.1:{api_port};"),
                ),
                ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
                (
                    "listen 443 ssl",
                    format!("listen 127.0.0.1:{https_port} ssl"),
                ),
                ("listen [::]:80;", String::new()),
                ("listen [::]:443 ssl http2;", String::new()),
            ],
        );
        let stderr = std::fs::File::create(conf.dir.path().join("nginx.stderr")).unwrap();
        let mut nginx = conf.nginx(&[]).stderr(stderr).spawn().expect(NGINX);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
            let exited = nginx.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "nginx did not start ({exited:?}):\n{}",
                std::fs::read_to_string(conf.dir.path().join("nginx.stderr")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ca = reqwest::Certificate::from_pem(conf.ca_pem.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .resolve(HOST, ([127, 0, 0, 1], https_port).into())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        LiveSite {
            conf,
            nginx,
            http_port,
            https_port,
            ingest,
            api,
            client,
        }
    }

    fn https(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.https_port)
    }

    fn last(log: &Log) -> Received {
        log.lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream got a request")
    }

    /// How many requests the two upstreams have received.
    fn received(&self) -> (usize, usize) {
        (
            self.ingest.lock().unwrap().len(),
            self.api.lock().unwrap().len(),
        )
    }

    /// `openssl s_client` against the HTTPS port, with `extra` options; its output.
    fn s_client(&self, extra: &[&str]) -> String {
        let connect = format!("127.0.0.1:{}", self.https_port);
        let mut args = vec!["s_client", "-connect", &connect, "-servername", HOST];
        args.extend_from_slice(extra);
        process::text(&run_tool("openssl", &args, &[], "openssl"))
    }
}

/// nginx's own refusals are problem documents, like the services'.
async fn assert_problem(r: reqwest::Response, status: u16, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    assert!(
        r.text().await.unwrap().contains("\"type\":\"/problems/"),
        "{what}"
    );
}

#[tokio::test]
async fn the_nginx_site_routes_to_the_services_and_forwards_ids_and_the_client_address() {
    let site = LiveSite::start().await;
    let http = format!("http://{HOST}:{}", site.http_port);
    // Port 80: everything moves to HTTPS, but certbot's challenges are answered there.
    let r = site
        .client
        .get(format!("{http}/orders?status=open"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://{HOST}/orders?status=open")
    );
    let token = site
        .conf
        .dir
        .path()
        .join("www/.well-known/acme-challenge/t0ken");
    std::fs::write(token, "proof").unwrap();
    let url = format!("{http}/.well-known/acme-challenge/t0ken");
    let r = site.client.get(url).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "proof".to_owned())
    );

    // Webhooks go to ingest with the caller's ids and trace context, and with the client's
    // address as nginx saw it, whatever the client claimed.
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = (site.client.post(site.https("/webhooks/payments/orders")))
        .header("content-type", "application/json")
        .header("x-correlation-id", "cid-deploy-1")
        .header("traceparent", traceparent)
        .header("tracestate", "vendor=1")
        .header("x-forwarded-for", "203.0.113.9")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    assert_eq!(r.text().await.unwrap(), "ingest");
    let got = LiveSite::last(&site.ingest);
    assert_eq!(got.uri, "/webhooks/payments/orders");
    for (header, value) in [
        ("x-correlation-id", "cid-deploy-1"),
        ("traceparent", traceparent),
        ("tracestate", "vendor=1"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("host", HOST),
    ] {
        let sent = got.headers.get(header).map(|v| v.to_str().unwrap());
        assert_eq!(sent, Some(value), "{header}");
    }

    // The operator API goes to the API. Without a correlation id nginx makes one, and its
    // access log line carries the same.
    for path in [
        "/orders/ord_1/events?limit=2",
        "/disputes",
        "/audit?actor=me",
        "/openapi.json",
        "/admin",
        "/admin/orders?status=success",
        "/admin/assets/htmx.min.js",
    ] {
        let r = site.client.get(site.https(path)).send().await.unwrap();
        let answer = (r.status().as_u16(), r.text().await.unwrap());
        assert_eq!(answer, (202, "api".to_owned()), "{path}");
        assert_eq!(LiveSite::last(&site.api).uri, path);
    }
    let id = LiveSite::last(&site.api).headers["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    // nginx writes the line once the answer is sent: poll for it.
    let access_log = site.conf.dir.path().join("pmctl.access.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read(&access_log).contains(&format!("cid={id}")) {
        assert!(
            Instant::now() < deadline,
            "cid={id} not in:\n{}",
            read(&access_log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_nginx_site_keeps_private_and_unknown_paths_from_the_services() {
    let site = LiveSite::start().await;
    let private = [
        "/internal/updates/orders",
        "/metrics",
        "/debug/pprof/profile",
        "/health/ready",
    ];
    let unknown = [
        "/",
        "/ordersx",
        "/administrator",
        "/webhooks",
        "/webhooks/",
        "/webhooks/payments/refunds",
    ];
    for path in private.into_iter().chain(unknown) {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let r = site
                .client
                .request(method.clone(), site.https(path))
                .send()
                .await
                .unwrap();
            assert_problem(r, 404, &format!("{method} {path}")).await;
        }
    }
    assert_eq!(
        site.received(),
        (0, 0),
        "an upstream got a private or unknown path"
    );
}

#[tokio::test]
async fn the_nginx_site_limits_bodies_and_rates_and_speaks_modern_tls() {
    let site = LiveSite::start().await;
    // Body limits: --max-body-bytes for webhooks, the API's own for operator requests.
    for (path, limit, log) in [
        ("/webhooks/payments/orders", max_body_bytes(), &site.ingest),
        ("/disputes/dp_1/evidence", max_command_body(), &site.api),
    ] {
        let send = |len: usize| {
            site.client
                .post(site.https(path))
                .body(vec![b' '; len])
                .send()
        };
        assert_eq!(send(limit).await.unwrap().status(), 202, "{path}");
        assert_eq!(LiveSite::last(log).body_len, limit);
        assert_problem(send(limit + 1).await.unwrap(), 413, path).await;
    }

    // The operator API's rate: a burst of 20, then 10 a second per address.
    let mut limited = None;
    for _ in 0..60 {
        let r = site.client.get(site.https("/audit")).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 202);
    }
    let r = limited.expect("60 requests at once to /audit, none answered 429");
    assert_eq!(r.headers()["retry-after"], "1");
    assert_problem(r, 429, "rate limit").await;

    // HTTP/2 by ALPN, and nothing older than TLS 1.2.
    let h2 = site.s_client(&["-alpn", "h2"]);
    assert!(h2.contains("ALPN protocol: h2"), "{h2}");
    let old = site.s_client(&["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    assert!(
        old.contains("alert protocol version"),
        "TLS 1.1 was not refused:\n{old}"
    );
}

// ---------------------------------------------------------------------------------------
// The environment file

/// The subcommands the units run.
const SUBCOMMANDS: [&str; 4] = ["serve-api", "serve-ingest", "migrate", "partition-maintain"];

/// The variables of deploy/pmctl.env.example, each with whether it is set (not commented).
fn env_example() -> BTreeMap<String, Option<String>> {
    let path = root().join("deploy/pmctl.env.example");
    let text = read(&path);
    let lines: Vec<&str> = text.lines().collect();
    let mut vars = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let entry = line.trim_start_matches('#');
        let name = entry.split_once('=').map_or("", |(n, _)| n);
        let is_var = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !is_var {
            assert!(
                line.is_empty() || line.starts_with('#'),
                "{}:{}: neither KEY=value nor a comment: {line:?}",
                path.display(),
                i + 1
            );
            continue;
        }
        let above = if i > 0 { lines[i - 1] } else { "" };
        assert!(
            above.starts_with("# ") && above.contains("Default"),
            "{name}: a one-line comment saying its default goes above it (got {above:?})"
        );
        let value = (!line.starts_with('#')).then(|| entry[name.len() + 1..].to_owned());
        assert!(
            vars.insert(name.to_owned(), value).is_none(),
            "{name} twice"
        );
    }
    vars
}

#[test]
fn the_environment_file_example_documents_every_variable_the_units_read() {
    let documented = env_example();
    let mut read_by_units = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for subcommand in SUBCOMMANDS {
        for (var, secret) in env_vars_of(subcommand) {
            if secret {
                secrets.insert(var.clone());
            }
            read_by_units.insert(var);
        }
    }
    // The OpenTelemetry variables pm-telemetry reads itself, beside the flag's.
    let traces = read(&root().join("crates/pm-telemetry/src/traces.rs"));
    for rest in traces.split("var(\"OTEL_").skip(1) {
        read_by_units.insert(format!("OTEL_{}", &rest[..rest.find('"').unwrap()]));
    }
    let missing: Vec<_> = read_by_units
        .iter()
        .filter(|v| !documented.contains_key(*v))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/pmctl.env.example lacks {missing:?}"
    );
    let unknown: Vec<_> = documented
        .keys()
        .filter(|v| v.starts_with("PM_") && !read_by_units.contains(*v))
        .collect();
    assert!(
        unknown.is_empty(),
        "{unknown:?}: read by none of {SUBCOMMANDS:?}"
    );
    assert!(
        secrets.contains("PM_WEBHOOK_SECRETS"),
        "secrets found: {secrets:?}"
    );
    for secret in &secrets {
        assert_eq!(
            documented[secret], None,
            "{secret} is a secret: a credential, never a value here"
        );
    }
}

#[test]
fn the_environment_file_nginx_and_the_units_agree() {
    let env = env_example();
    let set = |name: &str| {
        env[name]
            .clone()
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    let site = read(&root().join("deploy/nginx/pmctl.conf"));
    // The services listen on loopback, where nginx and ingest look for them.
    for (var, upstream) in [
        ("PM_API_LISTEN", "pmctl_api"),
        ("PM_INGEST_LISTEN", "pmctl_ingest"),
    ] {
        let listen = set(var);
        assert!(
            listen.starts_with("127.0.0.1:"),
            "{var}={listen}: loopback only"
        );
        let block = &site[site
            .find(&format!("upstream {upstream} {{"))
            .expect(upstream)..];
        assert!(
            block[..block.find('}').unwrap()].contains(&format!("server {listen};")),
            "{upstream}"
        );
    }
    assert_eq!(
        set("PM_API_URL"),
        format!("http://{}", set("PM_API_LISTEN"))
    );
    // nginx's timeouts around the services': their own 503 must arrive before nginx's
    // 504, and nginx must drop an idle upstream connection before the service does.
    let directive = |name: &str| -> Vec<Duration> {
        site.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{name} ")))
            .map(|v| humantime::parse_duration(v.trim_end_matches(';')).expect(name))
            .collect()
    };
    let default = |flag| humantime::parse_duration(&help_default("serve-api", flag)).unwrap();
    let read_timeout = directive("proxy_read_timeout");
    assert!(
        !read_timeout.is_empty()
            && read_timeout
                .iter()
                .all(|t| *t > default("--request-timeout"))
    );
    let keepalive = directive("keepalive_timeout");
    assert!(!keepalive.is_empty() && keepalive.iter().all(|t| *t < default("--header-timeout")));
}
