//! The listening ports: HTTP, HTTPS and the cluster port. Each has a fixed
//! token at the top of the token range (slab tokens never reach it). Bound
//! with a large backlog; accepted connections come back to the loop, which
//! makes them sockets. A connection over the limit is refused: with a short
//! 503 on the plain HTTP port, closed on the others (a plaintext answer means
//! nothing to a TLS client or a peer).

use std::io::{self, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// The kernel's queue of connections not yet accepted (capped by somaxconn).
const LISTEN_BACKLOG: i32 = 4096;
/// The tokens of the ports count down from here; `SIGNALS` is above.
const FIRST_PORT: usize = usize::MAX - 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Http,
    Https,
    Cluster,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Http => "port",
            Kind::Https => "secure port",
            Kind::Cluster => "cluster port",
        }
    }
}

pub struct Port {
    pub listener: TcpListener,
    pub kind: Kind,
    pub addr: SocketAddr,
}

/// What `accept` found.
pub enum Accepted {
    Conn(TcpStream, SocketAddr),
    /// Nothing more to accept now.
    Drained,
    /// Out of file descriptors (or memory): pause accepting for a moment
    /// instead of spinning on a listener that stays readable.
    Exhausted(io::Error),
}

impl Port {
    /// Binds `addr` with a listen backlog of `LISTEN_BACKLOG`: a burst of
    /// thousands of connects must not overflow it (std and mio use 128).
    /// With `shared`, the port is bound with SO_REUSEPORT: the workers of
    /// one node each bind it and the kernel spreads connections over them.
    pub fn bind(addr: SocketAddr, kind: Kind, shared: bool) -> Result<Port, String> {
        let fail = |e: io::Error| format!("cannot listen on {addr} ({}): {e}", kind.what());
        let listener = if shared {
            TcpListener::from_std(reuse_port(addr).map_err(fail)?)
        } else {
            TcpListener::bind(addr).map_err(fail)?
        };
        use std::os::fd::AsRawFd;
        // SAFETY: `listen` on a socket we own; calling it again on a
        // listening socket only changes the backlog (Linux, BSD).
        if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        let addr = listener.local_addr().map_err(fail)?;
        Ok(Port {
            listener,
            kind,
            addr,
        })
    }

    pub fn token(index: usize) -> Token {
        Token(FIRST_PORT - index)
    }

    /// The port index of `t`, if it is a port's token.
    pub fn index(t: Token, ports: usize) -> Option<usize> {
        let i = FIRST_PORT.checked_sub(t.0)?;
        (i < ports).then_some(i)
    }

    pub fn register(&mut self, registry: &Registry, index: usize) -> Result<(), String> {
        registry
            .register(&mut self.listener, Port::token(index), Interest::READABLE)
            .map_err(|e| format!("register {}: {e}", self.addr))
    }

    pub fn accept(&self) -> Accepted {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => return Accepted::Conn(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_resources(&e) => return Accepted::Exhausted(e),
                // A connection that died before we took it: take the next.
                Err(_) => continue,
            }
        }
    }
}

/// Turns away a connection over the limit, without waiting.
pub fn refuse(kind: Kind, mut stream: TcpStream) {
    if kind == Kind::Http {
        let _ = stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 20\r\nconnection: close\r\nretry-after: 5\r\n\r\ntoo many connections",
        );
    }
}

fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A listening-ready socket on `addr` with SO_REUSEADDR and SO_REUSEPORT
/// (not yet listening: `Port::bind` sets the backlog), non-blocking.
pub fn reuse_port(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    let family = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket calls on a descriptor we own until it is handed
    // to `TcpListener`; the address structs are local and sized right.
    unsafe {
        let fd = libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let listener = std::net::TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let p = &one as *const libc::c_int as *const libc::c_void;
            let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::setsockopt(fd, libc::SOL_SOCKET, opt, p, len) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let rc = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                libc::bind(fd, &sin as *const _ as *const libc::sockaddr, len)
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                libc::bind(fd, &sin6 as *const _ as *const libc::sockaddr, len)
            }
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(listener)
    }
}
