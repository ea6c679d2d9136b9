//! Chorus's shared vocabulary: the hub wire protocol ([`wire`]), the OT
//! helpers both sides use ([`ot`], [`client`]) and text position conversion
//! ([`text`]).
//!
//! Architecture invariant: this crate does no IO and knows nothing of tokio,
//! WebSockets or LSP, so everything in it is testable as plain functions.

pub mod client;
pub mod ot;
pub mod text;
pub mod wire;
