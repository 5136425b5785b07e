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

/// Bytes a [`FixedFrame`] copies at a time when it receives a frame: a
/// cache line, as a NIC writes them.
const LINE: usize = 64;

/// Bytes of a [`FixedFrame`]'s buffer: a UMEM frame's 4 KiB, a power of
/// two above [`VEC_FRAME_MAX`], so that masking a length with `BUF - 1`
/// keeps it and shows the compiler it is inside the buffer (no bounds
/// check where the frame's bytes are taken, which is often).
const BUF: usize = 4096;

/// [`FixedFrame`]'s storage, aligned as the cache lines it is made of.
#[derive(Clone)]
#[repr(C, align(64))]
struct Lines([[u8; LINE]; BUF / LINE]);

/// A frame in a buffer of fixed size, as a UMEM frame is: growing moves
/// only the frame's end over whatever the buffer holds there (the
/// pipeline writes every byte it adds), where a `Vec` would clear the
/// bytes first. Benchmarks and tests stand in for the NIC with it: each
/// frame arrives by [`FixedFrame::receive`], a copy of whole cache lines.
#[derive(Clone)]
pub struct FixedFrame {
    /// The buffer, of which the frame may use `VEC_FRAME_MAX` bytes.
    buf: Box<Lines>,
    /// The frame's length, at most `VEC_FRAME_MAX`.
    len: usize,
}

impl FixedFrame {
    /// A buffer holding `bytes` as its frame (at most [`VEC_FRAME_MAX`]).
    pub fn new(bytes: &[u8]) -> Self {
        assert!(bytes.len() <= VEC_FRAME_MAX, "frame larger than its buffer");
        let mut f = FixedFrame {
            buf: Box::new(Lines([[0; LINE]; BUF / LINE])),
            len: bytes.len(),
        };
        f.buf.0.as_flattened_mut()[..bytes.len()].copy_from_slice(bytes);
        f
    }

    /// Receive `from`'s frame into this buffer, as a NIC writes a frame
    /// anew: the cache lines it covers are copied whole, the length set.
    /// The first two lines (all of a TCP acknowledgement or a short
    /// request) are one copy of a fixed size, made in line; a longer
    /// frame's other lines follow.
    #[inline]
    pub fn receive(&mut self, from: &FixedFrame) {
        self.buf.0[..2].copy_from_slice(&from.buf.0[..2]);
        let lines = from.len.div_ceil(LINE) & (BUF / LINE - 1);
        if lines > 2 {
            self.buf.0[2..lines].copy_from_slice(&from.buf.0[2..lines]);
        }
        self.len = from.len;
    }

    /// The frame's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.buf.0.as_flattened()[..self.len & (BUF - 1)]
    }

    /// The frame's bytes, to rewrite.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf.0.as_flattened_mut()[..self.len & (BUF - 1)]
    }
}

impl std::fmt::Debug for FixedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedFrame")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for FixedFrame {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for FixedFrame {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl FrameBuf for FixedFrame {
    #[inline]
    fn bytes(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if len > VEC_FRAME_MAX {
            return false;
        }
        self.len = len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_frame_grows_shrinks_and_receives() {
        let a: Vec<u8> = (0..70u8).collect();
        let mut f = FixedFrame::new(&a);
        assert_eq!(&f[..], &a[..]);
        assert!(f.set_len(90));
        assert_eq!(f.len(), 90);
        assert_eq!(&f[..70], &a[..]);
        assert!(!f.set_len(VEC_FRAME_MAX + 1));
        assert_eq!(f.len(), 90);
        assert!(f.set_len(VEC_FRAME_MAX));
        assert!(f.set_len(10));
        assert_eq!(&f[..], &a[..10]);
        f[0] = 0xff;
        // A frame received over it is the other's, at the other's length,
        // whatever this one held; frames spanning one line, two and many.
        for n in [1usize, 63, 64, 65, 129, VEC_FRAME_MAX] {
            let b: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let from = FixedFrame::new(&b);
            f.receive(&from);
            assert_eq!(&f[..], &b[..], "{n} bytes");
        }
    }
}
