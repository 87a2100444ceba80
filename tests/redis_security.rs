//! Other local users against sessiondb on Redis (issue 18's security review): a server on
//! 127.0.0.1 without a password lets any local user read and write sessions. With a password
//! (`requirepass`), an ACL user, or a unix socket in a 0700 directory, a process of another user
//! (`nobody`, run as a child: needs root) can neither read nor write them, while the engine given
//! the right credentials (`redis://user:password@`, `redis://:password@`,
//! `redis+cluster://:password@h1,h2`, `unix:///path`) works. A missing or wrong password is
//! `Error::Server` of kind `Denied`, never a panic, and no message shows a password.
#![cfg(feature = "redis")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer, redis_available};
use sessiondb::{Engine, Error, NewSession, RedisEngine, Save, ServerErrorKind};

const PASSWORD: &str = "c0rrect-h0rse";

/// `redis-cli` on `port` with `password` (none: as anyone).
fn cli_auth(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--no-auth-warning", "-a", password])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether this process runs as root (a child can then become `nobody`).
fn root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id");
    let root = String::from_utf8_lossy(&out.stdout).trim() == "0";
    if !root {
        assert!(
            std::env::var_os("SESSIONDB_REQUIRE_ROOT").is_none(),
            "SESSIONDB_REQUIRE_ROOT is set but the tests do not run as root"
        );
        eprintln!("skipped: needs root to run a child as `nobody`");
    }
    root
}

/// The uid and gid of `nobody`.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "nobody"]).output().expect("run id");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("nobody's id")
    };
    (id("-u"), id("-g"))
}

/// Runs `program args` as `nobody` (std drops the supplementary groups before setuid).
fn as_nobody(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = nobody();
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run a child as nobody")
}

/// What the test binary, run as `nobody` (`attacker` below), managed against `url`, where
/// `redis-cli` reaches the server with `cli` (`-p PORT` or `-s SOCKET`).
fn attack_as_nobody(url: &str, cli: &str, id: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let out = as_nobody(
        &exe,
        &["--ignored", "--exact", "attacker", "--test-threads=1", "--nocapture"],
        &[("ATTACK_URL", url), ("ATTACK_CLI", cli), ("ATTACK_ID", id)],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find_map(|l| l.split_once("ATTACK: ").map(|(_, a)| a));
    line.unwrap_or_else(|| panic!("no answer from the attacker: {text}")).to_owned()
}

/// Run as `nobody` by `attack_as_nobody`, as another local user would: opens an engine on
/// `ATTACK_URL`, logs itself in (a session with data of its choosing), and copies that session
/// over the victim's id `ATTACK_ID` with `redis-cli` (its token now opens the victim's id).
/// Prints what happened.
#[test]
#[ignore = "a child process of another test"]
fn attacker() {
    let var = |name: &str| std::env::var(name).expect(name);
    let id = sessiondb::SessionId::parse(&var("ATTACK_ID")).expect("an id");
    let result = RedisEngine::from_url(&var("ATTACK_URL")).and_then(|e| {
        let own = e.create_with(NewSession::new(b"user=root", b""))?;
        let (from, to) = (format!("sessiondb:{{{}}}", own.id), format!("sessiondb:{{{id}}}"));
        let cli: Vec<String> = var("ATTACK_CLI").split(' ').map(str::to_owned).collect();
        let out =
            Command::new("redis-cli").args(&cli).args(["copy", &from, &to, "replace"]).output();
        println!("copy: {:?}", out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()));
        e.load(&id, &own.token).map(|got| got.session_data)
    });
    match result {
        Ok(data) => println!("ATTACK: hijacked {}", String::from_utf8_lossy(&data)),
        Err(Error::Server { kind, message }) => println!("ATTACK: {kind:?} {message}"),
        Err(other) => println!("ATTACK: refused {other:?}"),
    }
}

/// A server on 127.0.0.1 that requires `PASSWORD` (set once it answers: the helper pings it
/// without one).
fn with_password() -> RedisServer {
    let server = RedisServer::start(&[]);
    assert_eq!(server.cli(&["config", "set", "requirepass", PASSWORD]), "OK");
    server
}

/// A victim's session on `e`: its id and token.
fn victim(e: &RedisEngine) -> sessiondb::Created {
    e.create_with(NewSession::new(b"victim's data", b"").user(b"victim"))
        .expect("create the victim's session")
}

#[test]
fn without_a_password_any_local_user_hijacks_a_session() {
    if !redis_available() || !root() {
        return;
    }
    // The positive control of the tests below: the attack works on an open server.
    let server = RedisServer::start(&[]);
    let e = RedisEngine::from_url(&server.url()).expect("open");
    let c = victim(&e);
    let port = format!("-p {}", server.port());
    let got = attack_as_nobody(&server.url(), &port, c.id.as_str());
    assert_eq!(got, "hijacked user=root");
    let key = format!("sessiondb:{{{}}}", c.id);
    let cli = as_nobody(Path::new("redis-cli"), &["-p", &server.port().to_string(), "--scan"], &[]);
    assert!(String::from_utf8_lossy(&cli.stdout).contains(&key));
}

#[test]
fn a_password_keeps_other_local_users_out_and_lets_the_engine_in() -> Result<(), Error> {
    if !redis_available() || !root() {
        return Ok(());
    }
    let server = with_password();
    let port = server.port();
    let good = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let e = RedisEngine::from_url(&good)?;
    let c = victim(&e);
    let key = format!("sessiondb:{{{}}}", c.id);
    let g_before = cli_auth(port, PASSWORD, &["hget", &key, "g"]);
    // Without the password, or with a wrong one: nothing read, nothing written.
    for url in [server.url(), format!("redis://:wrong@127.0.0.1:{port}")] {
        let got = attack_as_nobody(&url, &format!("-p {port}"), c.id.as_str());
        assert!(got.starts_with("Denied"), "{got}");
        assert!(!got.contains(PASSWORD), "{got}");
    }
    let s = port.to_string();
    for args in [vec!["--scan"], vec!["hgetall", &key], vec!["hset", &key, "r", "x"]] {
        let out = as_nobody(Path::new("redis-cli"), &[&["-p", &s][..], &args].concat(), &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("NOAUTH") || text.trim().is_empty(), "{args:?}: {text}");
        assert!(!text.contains(c.id.as_str()), "{args:?} read a session id: {text}");
    }
    assert_eq!(cli_auth(port, PASSWORD, &["hget", &key, "g"]), g_before, "g moved");
    // The engine with the password reads and writes.
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(got.session_data, b"victim's data");
    e.store_state(&c.id, &c.token, Save::session_only(got.version, b"still mine"))?;
    Ok(())
}

#[test]
fn a_missing_or_wrong_password_is_denied_with_advice_never_a_panic() {
    if !redis_available() {
        return;
    }
    let server = with_password();
    let port = server.port();
    let wrong = format!("redis://:wr0ng-s3cret@127.0.0.1:{port}");
    let bad_user = format!("redis://nobody:{PASSWORD}@127.0.0.1:{port}");
    for url in [server.url(), wrong, bad_user] {
        let res = RedisEngine::from_url(&url);
        let Err(err @ Error::Server { kind: ServerErrorKind::Denied, .. }) = res else {
            panic!("{url}: {res:?}");
        };
        let text = err.to_string();
        assert!(text.contains("password"), "{text}");
        assert!(!text.contains("wr0ng-s3cret") && !text.contains(PASSWORD), "{text}");
    }
    // A password in a malformed or unknown address is not repeated either.
    for url in [
        format!("http://:{PASSWORD}@127.0.0.1:{port}"),
        format!("redis://:{PASSWORD}@127.0.0.1:notaport"),
        format!("redis+cluster://:{PASSWORD}@"),
    ] {
        let text = match RedisEngine::from_url(&url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} opened"),
        };
        assert!(!text.contains(PASSWORD), "{text}");
    }
    let builder = RedisEngine::builder(&format!("redis://ann:{PASSWORD}@127.0.0.1:{port}"));
    let debug = format!("{builder:?}");
    assert!(!debug.contains(PASSWORD) && debug.contains("ann:***@"), "{debug}");
}

/// The ACL docs/redis.md ("Security") gives the engine's user: its prefix's keys, the commands
/// it runs (scripts' included), nothing else.
fn acl_for(prefix: &str) -> Vec<String> {
    let mut acl = vec!["setuser".to_owned(), "app".to_owned(), "on".to_owned()];
    acl.push(format!(">{PASSWORD}"));
    acl.push(format!("~{prefix}:*"));
    for rule in "resetchannels -@all +ping +evalsha +eval +script|load +exists \
                 +get +set +del +hget +hset +hdel +hincrby +hkeys +hgetall +pexpire +persist \
                 +pttl +zadd +zrem +zcard +zrange +zscore"
        .split_whitespace()
    {
        acl.push(rule.to_owned());
    }
    acl
}

#[test]
fn an_acl_user_limited_to_its_prefix_runs_every_operation() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = RedisServer::start(&[]);
    let port = server.port();
    let acl = acl_for("shop");
    let args: Vec<&str> = ["acl"].into_iter().chain(acl.iter().map(String::as_str)).collect();
    assert_eq!(server.cli(&args), "OK");
    assert_eq!(server.cli(&["acl", "setuser", "default", "off"]), "OK");
    let url = format!("redis://app:{PASSWORD}@127.0.0.1:{port}");
    let e = RedisEngine::builder(&url).prefix("shop").max_sessions(Some(100)).open()?;
    let c = e.create_with(NewSession::new(b"a", b"s0").user(b"ann"))?;
    let got = e.load(&c.id, &c.token)?;
    e.store_state(&c.id, &c.token, Save::new(got.version, b"b", b"s1"))?;
    e.touch(&c.id, &c.token)?;
    let _lock = e.lock(&c.id, Duration::from_secs(1))?;
    let next = e.regenerate(&c.id, &c.token, Duration::from_secs(10))?;
    assert_eq!(e.user_sessions(b"ann")?, vec![next.id.clone()]);
    e.cleanup()?;
    assert_eq!(e.revoke_named(vec![(next.id.clone(), next.token.clone(), None)])?, 1);
    assert_eq!(e.revoke_user(b"ann")?, 0);
    // The same user under another prefix: every command is refused, as `Denied`.
    let other = RedisEngine::builder(&url).prefix("other").open()?;
    let res = other.create_with(NewSession::new(b"a", b""));
    assert!(matches!(res, Err(Error::Server { kind: ServerErrorKind::Denied, .. })), "{res:?}");
    Ok(())
}

#[test]
fn a_clusters_password_given_once_applies_to_every_node() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let mut cluster = RedisCluster::start();
    let ports: Vec<u16> = cluster.nodes().iter().map(RedisServer::port).collect();
    for port in &ports {
        assert_eq!(common::redis::cli(*port, &["config", "set", "requirepass", PASSWORD]), "OK");
    }
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let urls = [
        format!("redis+cluster://:{PASSWORD}@{}", hosts.join(",")),
        format!("redis+cluster://:{PASSWORD}@{}", hosts[0]),
        format!("redis+cluster://default:{PASSWORD}@{}", hosts.join(",")),
    ];
    for url in &urls {
        let e = RedisEngine::from_url(url)?;
        // Enough sessions to land in every node's slots.
        for _ in 0..24 {
            let c = e.create_with(NewSession::new(b"x", b"y"))?;
            let got = e.load(&c.id, &c.token)?;
            let next = e.regenerate(&c.id, &c.token, Duration::from_secs(5))?;
            assert!(e.load(&next.id, &next.token).is_ok(), "{got:?}");
        }
    }
    // Without it, or with another password on one node: refused, with advice.
    let res = RedisEngine::from_url(&format!("redis+cluster://{}", hosts.join(",")));
    assert!(matches!(res, Err(Error::Server { kind: ServerErrorKind::Denied, .. })), "{res:?}");
    let mixed =
        [format!("redis://:{PASSWORD}@{}", hosts[0]), format!("redis://:other@{}", hosts[1])];
    let mixed: Vec<&str> = mixed.iter().map(String::as_str).collect();
    let res = RedisEngine::cluster_builder(&mixed).open();
    let text = format!("{res:?}");
    assert!(matches!(res, Err(Error::InvalidInput(_))) && !text.contains(PASSWORD), "{text}");
    Ok(())
}

/// A `redis-server` listening only on a unix socket (no TCP port), killed when dropped.
struct SocketServer {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SocketServer {
    /// A server on `dir/redis.sock`, mode 0700 for the socket and `dir` (root's).
    fn start() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocketperm", "700"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server");
        let start = Instant::now();
        let server = SocketServer { child, socket, _dir: dir };
        loop {
            let out = Command::new("redis-cli").arg("-s").arg(&server.socket).arg("ping").output();
            if out.is_ok_and(|o| o.stdout.starts_with(b"PONG")) {
                return server;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no answer on the socket");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_unix_socket_in_a_private_directory_keeps_other_local_users_out() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = SocketServer::start();
    let path = server.socket.to_string_lossy().into_owned();
    for url in [format!("unix://{path}"), format!("redis+unix://{path}")] {
        let e = RedisEngine::from_url(&url)?;
        let c = e.create_with(NewSession::new(b"over the socket", b""))?;
        assert_eq!(e.load(&c.id, &c.token)?.session_data, b"over the socket");
    }
    if !root() {
        return Ok(());
    }
    let e = RedisEngine::from_url(&format!("unix://{path}"))?;
    let c = victim(&e);
    let got = attack_as_nobody(&format!("unix://{path}"), &format!("-s {path}"), c.id.as_str());
    assert!(got.starts_with("Denied"), "{got}");
    let out = as_nobody(Path::new("redis-cli"), &["-s", &path, "--scan"], &[]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(c.id.as_str()));
    assert_eq!(e.load(&c.id, &c.token)?.session_data, b"victim's data");
    Ok(())
}
