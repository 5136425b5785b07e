//! An in-memory port: frames are byte vectors queued by a test or a bench,
//! and what the pipeline transmits or drops is collected for inspection.

use super::{FrameAccounting, Port};
use crate::verdict::Verdict;
use std::collections::VecDeque;

/// A port backed by memory.
#[derive(Debug, Default)]
pub struct MemPort {
    /// Frames waiting to be received.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames transmitted, in order.
    pub tx: Vec<Vec<u8>>,
    /// The port each transmitted frame went out on.
    pub tx_ports: Vec<u8>,
    /// Verdicts of every frame processed, in order.
    pub verdicts: Vec<Verdict>,
    /// Frames per `poll`.
    pub batch: usize,
}

impl MemPort {
    /// An empty port with batches of 64.
    pub fn new() -> Self {
        MemPort {
            batch: 64,
            ..Default::default()
        }
    }

    /// Queue a frame for reception.
    pub fn push(&mut self, frame: Vec<u8>) {
        self.rx.push_back(frame);
    }
}

impl Port for MemPort {
    fn poll<F: FnMut(u8, &mut dyn super::FrameBuf) -> Verdict>(
        &mut self,
        _timeout_ms: i32,
        mut f: F,
    ) -> std::io::Result<usize> {
        let n = self.batch.min(self.rx.len());
        for _ in 0..n {
            let Some(mut frame) = self.rx.pop_front() else {
                break;
            };
            let v = f(0, &mut frame);
            self.verdicts.push(v);
            if let Verdict::Tx(port) = v {
                self.tx_ports.push(port);
                self.tx.push(frame);
            }
        }
        Ok(n)
    }

    fn accounting(&self) -> FrameAccounting {
        let n = (self.rx.len() + self.tx.len()) as u64;
        FrameAccounting {
            total: n,
            rx: self.rx.len() as u64,
            tx: self.tx.len() as u64,
            ..Default::default()
        }
    }
}
