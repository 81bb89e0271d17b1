//! The `watercooler` binary: parse the command line, make the TLS identity,
//! bind, print one line per listener, and run the event loop. Start-up
//! problems are one line on stderr and a non-zero exit.

use std::io::Write;
use std::process::ExitCode;

use watercooler::bus::mesh::config;
use watercooler::cli::{self, Command, USAGE};
use watercooler::reactor::Server;
use watercooler::{error, info, log, tls, workers};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watercooler: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let command = cli::parse(
        std::env::args_os().skip(1),
        std::env::var("PORT").ok(),
        std::env::var("SECURE_PORT").ok(),
    )?;
    let opts = match command {
        Command::Help => {
            print!("{USAGE}");
            return Ok(());
        }
        Command::Version => {
            println!("watercooler {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::GenCookie => {
            let cookie = config::gen_cookie();
            if cookie.is_empty() {
                return Err("the system's random source failed".into());
            }
            println!("{cookie}");
            return Ok(());
        }
        Command::Run(opts) => *opts,
    };
    log::set_level(opts.log_level);
    log::set_json(opts.log_json);
    if opts.workers > 1 && opts.worker.is_none() {
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        return workers::supervise(&opts, &args);
    }
    if let Some(k) = opts.worker {
        log::set_worker(k);
    }
    let files = raise_fd_limit();
    let identity = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => tls::load(cert, key)?,
        _ => tls::self_signed()?,
    };
    let name = opts.name.clone();
    let cluster = match &opts.config {
        None => None,
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
            Some(config::parse(&shown, &text, &name)?)
        }
    };
    let from_file = opts.cert.is_some();
    let mut server = Server::new(opts, identity.config, cluster)?;
    info!(
        "tls certificate sha256 {} ({})",
        identity.fingerprint,
        if from_file {
            "from --cert"
        } else {
            "self-signed, made at start"
        }
    );

    let mut out = std::io::stdout().lock();
    for (addr, secure) in &server.addrs {
        let scheme = if *secure { "https" } else { "http" };
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        let _ = writeln!(out, "listening on {scheme}://{host}:{}", addr.port());
    }
    if let Some(addr) = server.cluster_addr {
        let _ = writeln!(out, "cluster on {addr}");
    }
    let _ = out.flush();
    drop(out);
    info!("node {name} started");
    info!(
        "open-file limit {files}: this process holds about {} connections",
        files.saturating_sub(64)
    );
    server.run().map_err(|e| {
        error!("event loop failed: {e}");
        format!("event loop: {e}")
    })
}

/// Raises the soft open-file limit to the hard one (each listener is a
/// file) and returns the limit now in force.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
    }
    lim.rlim_cur
}
