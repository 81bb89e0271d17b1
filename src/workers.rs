//! `--workers N`: one node as N worker processes on one host, for a host
//! with more cores than one, or more sockets than one process may hold.
//! This process becomes their supervisor and serves nothing itself:
//!
//! - the HTTP and HTTPS ports are bound by every worker with SO_REUSEPORT
//!   (the kernel spreads connections over them); a port given as 0 is
//!   chosen here first, so all workers share it;
//! - the workers of a lone node form a cluster among themselves on
//!   loopback (a cluster file made here, a fresh cookie, TLS links), so a
//!   message published on any worker reaches every listener once and
//!   `Last-Event-ID` resumes on any worker; with `bus = redis://…` each
//!   worker joins Redis instead. Worker K is called `NODE+K@127.0.0.1`: its
//!   own origin tag and log directory, shown as `NODE` on the page;
//! - a worker that dies is started again (its listeners reconnect and
//!   resume); SIGTERM or SIGINT is passed to every worker, which drains,
//!   and the supervisor exits when all have.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;

use crate::bus::mesh::config;
use crate::cli::{default_data_dir, Options};
use crate::reactor::listen::reuse_port;
use crate::{info, warn};

/// A worker that dies sooner than this after its start is started again
/// only after `RESTART_PAUSE` (a worker that cannot start must not spin);
/// after `GIVE_UP` such deaths in a row the node stops, saying why.
const QUICK_DEATH: Duration = Duration::from_secs(5);
const RESTART_PAUSE: Duration = Duration::from_secs(1);
const GIVE_UP: u32 = 5;

struct Worker {
    k: usize,
    child: Option<Child>,
    started: Instant,
    /// When to start it again after it died.
    restart_at: Option<Instant>,
    /// Deaths soon after starting, in a row.
    quick_deaths: u32,
}

/// The name of worker `k` of node `node`.
pub fn worker_name(node: &str, k: usize) -> String {
    format!("{node}+{k}@127.0.0.1")
}

/// Runs the workers of `opts` until a signal has drained them all.
/// `args` are the command line as given (each worker gets them, then its
/// own settings, which win).
pub fn supervise(opts: &Options, args: &[OsString]) -> Result<(), String> {
    let n = opts.workers;
    // The shared ports: chosen now when given as 0, held (bound, never
    // listening) so no one else takes them while workers come and go.
    let mut held = Vec::new();
    let mut port_of = |port: u16| -> Result<u16, String> {
        if port != 0 {
            return Ok(port);
        }
        let l = reuse_port(SocketAddr::new(opts.bind, 0))
            .map_err(|e| format!("cannot choose a port on {}: {e}", opts.bind))?;
        let p = l.local_addr().map_err(|e| e.to_string())?.port();
        held.push(l);
        Ok(p)
    };
    let port = port_of(opts.port)?;
    let secure_port = port_of(opts.secure_port)?;
    let (conf, _dir) = cluster_file(opts)?;
    let names: Vec<String> = (1..=n).map(|k| worker_name(&opts.name, k)).collect();
    let spawn = |k: usize| -> Result<Child, String> {
        let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        cmd.args(args)
            .args(["--workers", "1", "--worker", &k.to_string()])
            .args(["--name", &names[k - 1]])
            .args(["--port", &port.to_string()])
            .args(["--secure-port", &secure_port.to_string()])
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Their own process group: a terminal's Ctrl-C reaches the
            // supervisor only, which passes one signal on.
            .process_group(0);
        // SAFETY: prctl and getppid in the child before exec, both
        // async-signal-safe: if the supervisor dies (even by SIGKILL) its
        // workers drain and exit; one that died before prctl took effect is
        // caught by the parent check.
        let supervisor = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != supervisor {
                    return Err(std::io::Error::other("the supervisor is gone"));
                }
                Ok(())
            });
        }
        // An explicit --data is shared: each worker takes a directory in it
        // (the default one already differs by the worker's name).
        if let Some(dir) = &opts.data {
            if *dir != default_data_dir(&opts.name) {
                cmd.arg("--data").arg(dir.join(format!("worker-{k}")));
            }
        }
        cmd.spawn()
            .map_err(|e| format!("cannot start worker {k}: {e}"))
    };
    let now = Instant::now();
    let mut workers = Vec::with_capacity(n);
    for k in 1..=n {
        let child = spawn(k)?;
        info!("worker {k} started (pid {})", child.id());
        workers.push(Worker {
            k,
            child: Some(child),
            started: now,
            restart_at: None,
            quick_deaths: 0,
        });
    }
    let host = if opts.bind.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        opts.bind.to_string()
    };
    println!("listening on http://{host}:{port}");
    println!("listening on https://{host}:{secure_port}");
    info!(
        "node {} started: {n} workers sharing ports {port} and {secure_port}",
        opts.name
    );

    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut signals =
        Signals::new([libc::SIGTERM, libc::SIGINT]).map_err(|e| format!("signals: {e}"))?;
    poll.registry()
        .register(&mut signals, Token(0), Interest::READABLE)
        .map_err(|e| format!("register signals: {e}"))?;
    let mut events = Events::with_capacity(8);
    let mut draining = false;
    let mut failed = false;
    loop {
        let _ = poll.poll(&mut events, Some(Duration::from_millis(100)));
        for sig in signals.pending() {
            info!(
                "signal {sig} received: {} the workers",
                if draining { "stopping" } else { "draining" }
            );
            draining = true;
            for w in &workers {
                if let Some(c) = &w.child {
                    // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
                    unsafe { libc::kill(c.id() as libc::pid_t, sig) };
                }
            }
        }
        let now = Instant::now();
        let mut give_up = false;
        for w in &mut workers {
            let Some(child) = &mut w.child else {
                if !draining && w.restart_at.is_some_and(|at| at <= now) {
                    w.restart_at = None;
                    match spawn(w.k) {
                        Ok(c) => {
                            info!("worker {} started again (pid {})", w.k, c.id());
                            w.child = Some(c);
                            w.started = now;
                        }
                        Err(e) => {
                            warn!("{e}");
                            w.restart_at = Some(now + RESTART_PAUSE);
                        }
                    }
                }
                continue;
            };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            w.child = None;
            if draining {
                failed |= !status.success();
                continue;
            }
            let quick = now.duration_since(w.started) < QUICK_DEATH;
            w.quick_deaths = if quick { w.quick_deaths + 1 } else { 0 };
            if w.quick_deaths >= GIVE_UP {
                warn!(
                    "worker {} exited ({status}) {GIVE_UP} times just after starting: stopping the node (its log says why)",
                    w.k
                );
                give_up = true;
                continue;
            }
            warn!(
                "worker {} exited ({status}): starting it again{}",
                w.k,
                if quick { " in a moment" } else { "" }
            );
            w.restart_at = Some(if quick { now + RESTART_PAUSE } else { now });
        }
        if give_up && !draining {
            draining = true;
            failed = true;
            for w in &workers {
                if let Some(c) = &w.child {
                    // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
                    unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
                }
            }
        }
        if draining && workers.iter().all(|w| w.child.is_none()) {
            info!("all workers stopped");
            drop(held);
            return if failed {
                Err("a worker did not stop cleanly".into())
            } else {
                Ok(())
            };
        }
    }
}

/// The cluster file every worker gets: the user's, when it names a Redis
/// bus; otherwise one made here for the workers alone (a mesh on loopback
/// with a fresh cookie), in a directory removed when the supervisor ends.
fn cluster_file(opts: &Options) -> Result<(PathBuf, Option<TempDir>), String> {
    if let Some(path) = &opts.config {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let parsed = config::parse(&shown, &text, &worker_name(&opts.name, 1))
            .or_else(|_| config::parse(&shown, &text, &opts.name))?;
        if parsed.redis.is_none() {
            return Err(format!(
                "{shown}: --workers needs `bus = redis://…` in a cluster file (the workers of a mesh node would each need an entry); without --config the workers form their own cluster"
            ));
        }
        return Ok((path.clone(), None));
    }
    let mut entries = Vec::new();
    for k in 1..=opts.workers {
        let free = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot choose a cluster port: {e}"))?;
        entries.push(format!("{}:{}", worker_name(&opts.name, k), free.port()));
    }
    let dir = TempDir::new()?;
    let path = dir.0.join("workers.conf");
    let text = format!(
        "# the workers of {}, made by --workers\nnodes = {}\nsync_nodes_timeout = 3000\ncookie = {}\n",
        opts.name,
        entries.join(", "),
        config::gen_cookie()
    );
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok((path, Some(dir)))
}

/// A private directory for the workers' cluster file (it holds a cookie),
/// removed on drop: a fresh random name, made by us with mode 0700 (never
/// one that already exists, which another user could have prepared).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let mut name = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut name)
            .map_err(|_| "the system's random source failed".to_string())?;
        let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("watercooler-workers-{name}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
