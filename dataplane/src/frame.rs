//! The buffer a frame is rewritten in. Shared by the ports that own the
//! memory (`io`) and the pipeline that rewrites it, so that neither
//! depends on the other.

/// A received frame the pipeline rewrites in place: its bytes, and room
/// to grow into the tailroom of its buffer (encapsulation).
pub trait FrameBuf {
    /// The frame's bytes.
    fn bytes(&mut self) -> &mut [u8];
    /// Set the frame's length, growing into the tailroom or shrinking;
    /// false (and no change) when the buffer has no room for `len`.
    fn set_len(&mut self, len: usize) -> bool;
}

/// The largest frame a `Vec` frame may grow to (as a UMEM frame of 4 KiB
/// minus the kernel's headroom).
pub const VEC_FRAME_MAX: usize = 3840;

impl FrameBuf for Vec<u8> {
    fn bytes(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }

    fn set_len(&mut self, len: usize) -> bool {
        if len > VEC_FRAME_MAX {
            return false;
        }
        self.resize(len, 0);
        true
    }
}
