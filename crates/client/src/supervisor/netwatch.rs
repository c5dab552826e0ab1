//! Network watcher: tells the supervisor when the network may have come back, so it retries at
//! once instead of sleeping out its backoff (and, while connected, checks the session).
//!
//! Linux: one `NETLINK_ROUTE` socket (plain `libc`, no daemon, no D-Bus) subscribed to link,
//! IPv4/IPv6 address and route changes. A new address, a new route or a link that is up and
//! running counts as "maybe back"; removals do not (there is nothing to retry for). Changes come
//! in bursts (an interface coming up adds a link, addresses and several routes), so they are
//! folded: one signal once the burst has been quiet for [`QUIET`] (at most [`MAX_FOLD`] after
//! its start). Each signal is [`SupervisorHandle::network_changed`].
//!
//! Other systems: a documented no-op; the supervisor's own backoff, wake detection and
//! liveness ping still recover, only later.
//!
//! The watcher stops when the supervisor has stopped.

use super::SupervisorHandle;
use std::time::Duration;

/// A burst of changes is one signal once it has been quiet this long.
pub const QUIET: Duration = Duration::from_millis(300);
/// ... or this long after its first change, whichever comes first.
pub const MAX_FOLD: Duration = Duration::from_secs(2);

/// Starts watching on the current tokio runtime. Failing to watch (no netlink, say in a
/// sandbox) is logged and otherwise ignored.
pub fn spawn(handle: SupervisorHandle) {
    #[cfg(target_os = "linux")]
    {
        match linux::RouteSocket::open() {
            Ok(sock) => {
                tokio::spawn(linux::run(sock, handle));
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the network (netlink)"),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = handle;
        tracing::debug!("no network watcher on this OS");
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{SupervisorHandle, MAX_FOLD, QUIET};
    use crate::event::ConnectionState;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use tokio::io::unix::AsyncFd;
    use tokio::time::{sleep_until, Instant};

    /// A non-blocking `NETLINK_ROUTE` socket bound to the link, address and route groups.
    pub struct RouteSocket(AsyncFd<OwnedFd>);

    impl RouteSocket {
        pub fn open() -> io::Result<RouteSocket> {
            // SAFETY: plain syscalls on a descriptor we own; `addr` is a valid sockaddr_nl; the
            // descriptor is registered with tokio exactly once and owned by it from then on.
            unsafe {
                let fd = libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    libc::NETLINK_ROUTE,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let mut addr: libc::sockaddr_nl = std::mem::zeroed();
                addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
                addr.nl_groups = (libc::RTMGRP_LINK
                    | libc::RTMGRP_IPV4_IFADDR
                    | libc::RTMGRP_IPV6_IFADDR
                    | libc::RTMGRP_IPV4_ROUTE
                    | libc::RTMGRP_IPV6_ROUTE) as u32;
                let r = libc::bind(
                    fd.as_raw_fd(),
                    &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                );
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY (register): we own `fd` and hand it over; nothing else uses it.
                let afd = AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)?;
                Ok(RouteSocket(afd))
            }
        }

        /// Waits for the next datagram; true when it says the network may be back.
        async fn next(&self, buf: &mut [u8]) -> io::Result<bool> {
            loop {
                let mut guard = self.0.readable().await?;
                let r = guard.try_io(|fd| {
                    // SAFETY: `buf` is valid for `buf.len()` bytes.
                    let n = unsafe {
                        libc::recv(
                            fd.as_raw_fd(),
                            buf.as_mut_ptr() as *mut libc::c_void,
                            buf.len(),
                            0,
                        )
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(n as usize)
                    }
                });
                match r {
                    Ok(Ok(n)) => return Ok(maybe_back(&buf[..n])),
                    // ENOBUFS: the kernel dropped messages for us; something changed.
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(true),
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => continue,
                }
            }
        }
    }

    /// Whether a netlink datagram holds a change that may bring the network back: a new
    /// address, a new route, or a link that is up with carrier.
    pub fn maybe_back(mut data: &[u8]) -> bool {
        const HDR: usize = 16; // struct nlmsghdr
        let mut back = false;
        while data.len() >= HDR {
            let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap());
            if len < HDR || len > data.len() {
                break;
            }
            match kind {
                libc::RTM_NEWADDR | libc::RTM_NEWROUTE => back = true,
                // struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32.
                libc::RTM_NEWLINK if len >= HDR + 12 => {
                    let flags = u32::from_ne_bytes(data[HDR + 8..HDR + 12].try_into().unwrap());
                    let up = (libc::IFF_UP | libc::IFF_RUNNING | libc::IFF_LOWER_UP) as u32;
                    if flags & up == up {
                        back = true;
                    }
                }
                _ => {}
            }
            let step = (len + 3) & !3;
            data = &data[step.min(data.len())..];
        }
        back
    }

    pub async fn run(sock: RouteSocket, handle: SupervisorHandle) {
        let mut state = handle.watch_state();
        let mut buf = vec![0u8; 16 * 1024];
        // Start and last change of the burst being folded, if any.
        let mut burst: Option<(Instant, Instant)> = None;
        loop {
            let fire_at = burst.map(|(first, last)| (last + QUIET).min(first + MAX_FOLD));
            tokio::select! {
                r = sock.next(&mut buf) => match r {
                    Ok(true) => {
                        let now = Instant::now();
                        burst = Some((burst.map_or(now, |(first, _)| first), now));
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "network watcher stopped");
                        return;
                    }
                },
                _ = sleep_until(fire_at.unwrap_or_else(Instant::now)), if fire_at.is_some() => {
                    burst = None;
                    tracing::debug!("network changed");
                    handle.network_changed();
                }
                r = state.changed() => {
                    if r.is_err() || *state.borrow() == ConnectionState::Stopped {
                        return;
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn msg(kind: u16, flags: u32) -> Vec<u8> {
            let mut m = Vec::new();
            m.extend_from_slice(&32u32.to_ne_bytes()); // len: header + ifinfomsg (16 + 16)
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0; 10]); // flags, seq, pid
            m.extend_from_slice(&[0; 8]); // family, pad, type, index
            m.extend_from_slice(&flags.to_ne_bytes());
            m.extend_from_slice(&[0; 4]); // change
            m
        }

        #[test]
        fn new_addresses_routes_and_running_links_count_removals_do_not() {
            let up = (libc::IFF_UP | libc::IFF_RUNNING | libc::IFF_LOWER_UP) as u32;
            assert!(maybe_back(&msg(libc::RTM_NEWADDR, 0)));
            assert!(maybe_back(&msg(libc::RTM_NEWROUTE, 0)));
            assert!(maybe_back(&msg(libc::RTM_NEWLINK, up)));
            assert!(!maybe_back(&msg(libc::RTM_NEWLINK, libc::IFF_UP as u32)));
            assert!(!maybe_back(&msg(libc::RTM_DELADDR, 0)));
            assert!(!maybe_back(&msg(libc::RTM_DELROUTE, 0)));
            // Several messages in one datagram; a truncated tail is ignored.
            let mut both = msg(libc::RTM_DELLINK, 0);
            both.extend(msg(libc::RTM_NEWADDR, 0));
            assert!(maybe_back(&both));
            assert!(!maybe_back(&both[..20]));
        }

        #[tokio::test]
        async fn the_route_socket_opens_here() {
            RouteSocket::open().expect("netlink route socket");
        }
    }
}
