//! `src/slots.rs` and the keyed hash it uses, compiled on their own so that loom can
//! replace their atomics (see `Cargo.toml`). The models are `slots::loom_tests`.

#[path = "../../../src/keyed.rs"]
pub mod keyed;
#[path = "../../../src/slots.rs"]
pub mod slots;
