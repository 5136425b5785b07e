//! Arbitrary `-R` input: all or nothing, never a panic, and a successful
//! restore saves back to something that restores identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvs_control::invariants;

fuzz_target!(|data: &[u8]| {
    // xvsadm reads standard input lossily as UTF-8, so does the target.
    let rules = String::from_utf8_lossy(data);
    invariants::check_restore(&rules);
});
