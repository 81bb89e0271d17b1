//! Command-line options (lexopt) and environment variables, turned into one
//! `Options` value before any socket is opened. Flags win over `PORT` and
//! `SECURE_PORT`. Every problem is one readable line for `main` to print.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::log::Level;
use crate::store::log::Fsync;

pub const USAGE: &str = "\
watercooler: a multi-node chatroom served over Server-Sent Events

usage: watercooler [options]

  --name NAME              node name (default watercooler@HOSTNAME)
  --port N                 HTTP port (env PORT, default 8080; 0 = any free port)
  --secure-port N          HTTPS port (env SECURE_PORT, default 8443; 0 = any free port)
  --bind ADDR              address to listen on (default 0.0.0.0)
  --config FILE            cluster file (sys.conf); without it the node runs alone
  --cert PEM --key PEM     TLS certificate chain and private key
                           (default: a self-signed certificate made at start)
  --history N              messages kept per room for Last-Event-ID resume (default 1000)
  --history-mb N           memory for messages across all rooms, MiB (default 64)
  --max-rooms N            rooms at once; a new one past it is refused 503 (default 1000)
  --publish-rate N         publishes per second per client address (default 5; 0: no limit)
  --publish-burst N        publishes a client may make at once (default 20)
  --trust-proxy ADDR       a reverse proxy whose X-Forwarded-For names the client
  --backlog N              messages per room a new stream is shown first (default 50; 0: none)
  --data DIR               where the node keeps its history log (default
                           watercooler-data/NAME; none: memory only)
  --fsync MODE             always | batch | off: when the log is synced to disk
                           (default batch: once per loop turn, before the 303)
  --max-message BYTES      longest message accepted, after decoding (default 4096)
  --max-connections N      connections held at once (default 50000)
  --heartbeat-ms N         SSE heartbeat when a stream is idle (default 15000)
  --request-timeout-ms N   time for a request head (and body) to arrive (default 10000)
  --idle-timeout-ms N      keep-alive idle time before closing (default 60000)
  --drain-ms N             on SIGTERM/SIGINT, time to finish before exiting (default 5000)
  --log LEVEL              error | warn | info | debug (default info)
  --log-format FORMAT      text | json (default text)
  --cluster-bind ADDR      where the cluster port listens (default: the host of
                           this node's entry in the cluster file)
  --workers N|auto         worker processes sharing the ports (default 1; auto:
                           one per core); see the README
  --gen-cookie             print a strong cluster cookie and exit
  --help                   this text
  --version                the version
";

#[derive(Debug, Clone)]
pub struct Options {
    pub name: String,
    pub port: u16,
    pub secure_port: u16,
    pub bind: IpAddr,
    pub config: Option<PathBuf>,
    pub cluster_bind: Option<IpAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub history: usize,
    pub history_mb: usize,
    pub max_rooms: usize,
    pub backlog: usize,
    pub publish_rate: u32,
    pub publish_burst: u32,
    pub trust_proxy: Option<IpAddr>,
    /// The history log's directory; `None`: memory only (`--data none`).
    pub data: Option<PathBuf>,
    pub fsync: Fsync,
    pub max_message: usize,
    pub max_connections: usize,
    pub heartbeat: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    /// Worker processes (`--workers`; 1: this process serves).
    pub workers: usize,
    /// Set in a worker started by `--workers`: its number (1-based).
    pub worker: Option<usize>,
    pub log_level: Level,
    pub log_json: bool,
    pub drain: Duration,
}

/// What the command line asks for: run a node, or print something and exit.
pub enum Command {
    Run(Box<Options>),
    Help,
    Version,
    /// Print a strong cluster cookie.
    GenCookie,
}

impl Options {
    pub fn defaults(env_port: Option<String>, env_secure: Option<String>) -> Result<Self, String> {
        let port = match env_port {
            Some(p) => parse_num::<u16>("PORT", &p)?,
            None => 8080,
        };
        let secure_port = match env_secure {
            Some(p) => parse_num::<u16>("SECURE_PORT", &p)?,
            None => 8443,
        };
        Ok(Options {
            name: format!("watercooler@{}", hostname()),
            port,
            secure_port,
            bind: IpAddr::from([0, 0, 0, 0]),
            config: None,
            cluster_bind: None,
            cert: None,
            key: None,
            history: 1000,
            history_mb: 64,
            max_rooms: 1000,
            backlog: 50,
            publish_rate: 5,
            publish_burst: 20,
            trust_proxy: None,
            data: None,
            fsync: Fsync::Batch,
            max_message: 4096,
            max_connections: 50_000,
            heartbeat: Duration::from_millis(15_000),
            request_timeout: Duration::from_millis(10_000),
            idle_timeout: Duration::from_millis(60_000),
            workers: 1,
            worker: None,
            log_level: Level::Info,
            log_json: false,
            drain: Duration::from_millis(5000),
        })
    }
}

fn parse_num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{what}: not a valid number: {s:?}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Parses `args` (without the program name). The environment is passed in so
/// that tests can call this without touching the process environment.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env_port: Option<String>,
    env_secure: Option<String>,
) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut o = Options::defaults(env_port, env_secure)?;
    let mut parser = lexopt::Parser::from_args(args);
    let mut data: Option<String> = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match &arg {
            Long(f) => format!("--{f}"),
            Short(c) => format!("-{c}"),
            Value(v) => return Err(format!("unexpected argument {v:?} (see --help)")),
        };
        let value = |p: &mut lexopt::Parser| -> Result<String, String> {
            let v = p.value().map_err(|e| e.to_string())?;
            v.into_string()
                .map_err(|_| format!("{flag}: value is not valid UTF-8"))
        };
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help),
            Long("version") | Short('V') => return Ok(Command::Version),
            Long("gen-cookie") => return Ok(Command::GenCookie),
            Long("name") => o.name = value(&mut parser)?,
            Long("port") => o.port = parse_num(&flag, &value(&mut parser)?)?,
            Long("secure-port") => o.secure_port = parse_num(&flag, &value(&mut parser)?)?,
            Long("bind") => o.bind = parse_num(&flag, &value(&mut parser)?)?,
            Long("config") => o.config = Some(value(&mut parser)?.into()),
            Long("cluster-bind") => o.cluster_bind = Some(parse_num(&flag, &value(&mut parser)?)?),
            Long("cert") => o.cert = Some(value(&mut parser)?.into()),
            Long("key") => o.key = Some(value(&mut parser)?.into()),
            Long("history") => o.history = parse_num(&flag, &value(&mut parser)?)?,
            Long("history-mb") => o.history_mb = parse_num(&flag, &value(&mut parser)?)?,
            Long("max-rooms") => o.max_rooms = parse_num(&flag, &value(&mut parser)?)?,
            Long("backlog") => o.backlog = parse_num(&flag, &value(&mut parser)?)?,
            Long("publish-rate") => o.publish_rate = parse_num(&flag, &value(&mut parser)?)?,
            Long("publish-burst") => o.publish_burst = parse_num(&flag, &value(&mut parser)?)?,
            Long("trust-proxy") => o.trust_proxy = Some(parse_num(&flag, &value(&mut parser)?)?),
            Long("data") => data = Some(value(&mut parser)?),
            Long("fsync") => {
                o.fsync = match value(&mut parser)?.as_str() {
                    "always" => Fsync::Always,
                    "batch" => Fsync::Batch,
                    "off" => Fsync::Off,
                    v => return Err(format!("--fsync: expected always|batch|off, got {v:?}")),
                }
            }
            Long("max-message") => o.max_message = parse_num(&flag, &value(&mut parser)?)?,
            Long("max-connections") => o.max_connections = parse_num(&flag, &value(&mut parser)?)?,
            Long("heartbeat-ms") => o.heartbeat = millis(&flag, &value(&mut parser)?)?,
            Long("request-timeout-ms") => o.request_timeout = millis(&flag, &value(&mut parser)?)?,
            Long("idle-timeout-ms") => o.idle_timeout = millis(&flag, &value(&mut parser)?)?,
            Long("drain-ms") => o.drain = millis(&flag, &value(&mut parser)?)?,
            Long("workers") => {
                o.workers = match value(&mut parser)?.as_str() {
                    "auto" => std::thread::available_parallelism().map_or(1, |n| n.get()),
                    v => parse_num(&flag, v)?,
                }
            }
            Long("worker") => o.worker = Some(parse_num(&flag, &value(&mut parser)?)?),
            Long("log-format") => {
                o.log_json = match value(&mut parser)?.as_str() {
                    "text" => false,
                    "json" => true,
                    v => return Err(format!("--log-format: expected text|json, got {v:?}")),
                }
            }
            Long("log") => {
                let v = value(&mut parser)?;
                o.log_level = Level::parse(&v)
                    .ok_or_else(|| format!("--log: expected error|warn|info|debug, got {v:?}"))?;
            }
            _ => return Err(format!("unknown option {flag} (see --help)")),
        }
    }
    check(&o)?;
    o.data = match data.as_deref() {
        None => Some(default_data_dir(&o.name)),
        Some("none") => None,
        Some("") => return Err("--data: a directory, or none".into()),
        Some(dir) => Some(dir.into()),
    };
    Ok(Command::Run(Box::new(o)))
}

/// `watercooler-data/NAME` under the working directory, the name made safe
/// for a path (so two nodes started in one folder keep separate logs).
pub fn default_data_dir(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '@' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    let safe = if safe.starts_with('.') {
        format!("_{safe}")
    } else {
        safe
    };
    PathBuf::from("watercooler-data").join(safe)
}

fn millis(flag: &str, s: &str) -> Result<Duration, String> {
    let ms: u64 = parse_num(flag, s)?;
    if ms == 0 {
        return Err(format!("{flag}: must be at least 1"));
    }
    Ok(Duration::from_millis(ms))
}

fn check(o: &Options) -> Result<(), String> {
    if o.name.is_empty() || o.name.len() > 255 {
        return Err("--name: must be 1 to 255 bytes".into());
    }
    if o.name
        .chars()
        .any(|c| c.is_control() || c == ',' || c.is_whitespace())
    {
        return Err("--name: no spaces, commas or control characters".into());
    }
    if o.cert.is_some() != o.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    if o.history == 0 || o.history > 1_000_000 {
        return Err("--history: 1 to 1000000".into());
    }
    if o.history_mb == 0 || o.history_mb > 1 << 20 {
        return Err("--history-mb: 1 to 1048576".into());
    }
    if o.backlog > 1000 {
        return Err("--backlog: 0 to 1000".into());
    }
    if o.max_rooms == 0 || o.max_rooms > 1_000_000 {
        return Err("--max-rooms: 1 to 1000000".into());
    }
    if o.max_message == 0 || o.max_message > 1 << 20 {
        return Err("--max-message: 1 to 1048576 bytes".into());
    }
    if o.workers == 0 || o.workers > 256 {
        return Err("--workers: 1 to 256, or auto".into());
    }
    if o.max_connections == 0 {
        return Err("--max-connections: at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], port: Option<&str>) -> Result<Options, String> {
        match parse(
            args.iter().map(OsString::from),
            port.map(String::from),
            None,
        )? {
            Command::Run(o) => Ok(*o),
            _ => Err("not run".into()),
        }
    }

    #[test]
    fn the_log_directory_defaults_to_one_per_node_name() {
        let o = run(&["--name", "node1@127.0.0.1"], None).unwrap();
        assert_eq!(
            o.data,
            Some(PathBuf::from("watercooler-data/node1@127.0.0.1"))
        );
        assert_eq!(o.fsync, Fsync::Batch);
        let o = run(&["--name", "../x/y", "--fsync", "always"], None).unwrap();
        assert_eq!(o.data, Some(PathBuf::from("watercooler-data/_.._x_y")));
        assert_eq!(o.fsync, Fsync::Always);
        assert_eq!(run(&["--data", "none"], None).unwrap().data, None);
        assert_eq!(
            run(&["--data", "/var/lib/wc"], None).unwrap().data,
            Some(PathBuf::from("/var/lib/wc"))
        );
        assert!(run(&["--fsync", "sometimes"], None).is_err());
        assert!(run(&["--data", ""], None).is_err());
    }

    #[test]
    fn workers_are_counted_or_one_per_core() {
        assert_eq!(run(&[], None).unwrap().workers, 1);
        assert_eq!(run(&["--workers", "4"], None).unwrap().workers, 4);
        assert!(run(&["--workers", "auto"], None).unwrap().workers >= 1);
        assert!(run(&["--workers", "0"], None).is_err());
        assert!(run(&["--workers", "many"], None).is_err());
        assert_eq!(run(&["--worker", "2"], None).unwrap().worker, Some(2));
    }

    #[test]
    fn flags_win_over_environment() {
        assert_eq!(run(&[], Some("9000")).unwrap().port, 9000);
        assert_eq!(run(&["--port", "9001"], Some("9000")).unwrap().port, 9001);
        assert_eq!(run(&[], None).unwrap().secure_port, 8443);
    }

    #[test]
    fn bad_input_is_an_error_line() {
        for args in [
            &["--port", "x"][..],
            &["--nope"],
            &["stray"],
            &["--cert", "a.pem"],
            &["--history", "0"],
            &["--max-rooms", "0"],
            &["--history-mb", "x"],
            &["--name", "a b"],
            &["--log", "loud"],
        ] {
            assert!(run(args, None).is_err(), "{args:?}");
        }
        assert!(run(&[], Some("http")).is_err());
    }
}
