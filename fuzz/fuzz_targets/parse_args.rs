//! Arbitrary argument vectors (NUL-separated) through xvsadm's parser and
//! the control plane: no panic, ipvsadm's exit statuses, failed changes
//! leave no trace, successful ones save and restore identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvs_control::invariants;

fuzz_target!(|data: &[u8]| {
    let args = invariants::args_from_bytes(data);
    invariants::check_args(&args);
});
