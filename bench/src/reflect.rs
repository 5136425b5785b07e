//! `xvs-bench reflect`: the least a forwarder can do on AF_XDP. Frames
//! for the given addresses are steered to one socket (xvs's XDP program),
//! their MACs are swapped, and the same UMEM frame goes back out. No
//! parsing beyond that, no table, no scheduler: the ceiling of any AF_XDP
//! forwarder on the same machine and link, measured in the same run.
//! On a link of several queues (`--queues`), a socket and a thread per
//! queue, as xvsd has a worker per queue.

use crate::sink::RxSockets;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use xvs_dataplane::io::xsk::XskPort;
use xvs_dataplane::io::Port;
use xvs_dataplane::pipeline::Verdict;

/// Arguments of `xvs-bench reflect`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReflectArgs {
    /// Interface.
    #[arg(long)]
    pub iface: String,
    /// Queues to reflect on (0..N), a thread each.
    #[arg(long, default_value_t = 1)]
    pub queues: u32,
    /// Addresses whose TCP and UDP frames are reflected (repeat).
    #[arg(long = "addr", required = true)]
    pub addrs: Vec<IpAddr>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub secs: f64,
}

/// Swap the Ethernet addresses of `f` in place.
#[inline]
pub fn swap_macs(f: &mut [u8]) {
    if f.len() >= 12 {
        let (dst, src) = f[..12].split_at_mut(6);
        dst.swap_with_slice(src);
    }
}

/// Reflect until the time bound (or until killed); prints `ready` once
/// the sockets are bound, and the count at the end.
pub fn main(a: &ReflectArgs) -> Result<u64, String> {
    let mut rx = RxSockets::open(&a.iface, &a.addrs, a.queues.clamp(1, 64))?;
    println!("ready");
    let deadline = Instant::now() + Duration::from_secs_f64(a.secs.clamp(0.0, 3600.0));
    std::thread::scope(|sc| {
        let hs: Vec<_> = rx
            .ports
            .iter_mut()
            .map(|port| sc.spawn(move || reflect(port, deadline)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a queue's thread panicked"))
            .sum()
    })
}

/// Reflect what arrives on `port` until `deadline`.
fn reflect(port: &mut XskPort, deadline: Instant) -> Result<u64, String> {
    let mut n = 0u64;
    loop {
        // A blocking poll(): spinning here starves this core's softirq,
        // which delivers the reflected frames (measured: the rate does not
        // rise and latency grows to hundreds of ms).
        let got = port
            .poll(100, |_, f| {
                swap_macs(f.bytes());
                Verdict::Tx(0)
            })
            .map_err(|e| e.to_string())?;
        n += got as u64;
        if Instant::now() >= deadline {
            break;
        }
    }
    port.drain(100);
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn swaps() {
        let mut f = [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 8, 0];
        super::swap_macs(&mut f);
        assert_eq!(f[..12], [2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
    }
}
