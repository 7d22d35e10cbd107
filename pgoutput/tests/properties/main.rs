//! Property tests for the pgoutput crate: every message kind roundtrips through its encoder, and
//! no input — random, truncated or mutated — makes a decoder panic.

mod robustness;
mod roundtrip;
mod strategies;
