//! Arbitrary sync datagrams: never a panic, a dropped datagram yields no
//! record, an accepted one exactly the records its header announces, and
//! every connection decoded encodes and decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvs_config::sync::flags;

fuzz_target!(|data: &[u8]| {
    let Some((&syncid, d)) = data.split_first() else {
        return;
    };
    let mut out = Vec::new();
    match xvs_sync::decode(d, syncid, &mut out) {
        Err(_) => assert!(out.is_empty()),
        Ok(g) => {
            assert_eq!(out.len(), usize::from(g.nr_conns));
            let conns: Vec<_> = out.iter().filter_map(|r| r.ok()).collect();
            let mut enc = xvs_sync::Encoder::new(syncid, 65507);
            for c in &conns {
                enc.push(c).expect("255 records fit in 65507 bytes");
            }
            let Some(again) = enc.take() else {
                return;
            };
            let mut back = Vec::new();
            xvs_sync::decode(&again, syncid, &mut back).expect("our own datagram");
            for (c, b) in conns.iter().zip(&back) {
                let mut want = *c;
                want.flags = (want.flags & flags::BACKUP_MASK) | flags::SYNC;
                assert_eq!(b.as_ref().ok(), Some(&want));
            }
        }
    }
});
