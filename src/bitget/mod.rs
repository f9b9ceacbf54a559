//! Everything this program knows about Bitget, in one place: the endpoint table (path,
//! method, budget, scope, documented limit, signed or not), error codes and their classes,
//! request signing, the wire shapes and their parsing (each reply parsed once), the raw HTTP
//! layer (limiter, classification, retries, and forwarding a request someone else built),
//! the typed client on top, and the public WebSocket ([`ws`]: its limits, codes, messages
//! and a client).
//!
//! Nothing outside this module spells a Bitget path, a product type or an error code.

pub mod client;
pub mod config;
pub mod credential;
pub mod discovery;
pub mod egress;
pub mod endpoints;
pub mod error;
pub mod http;
pub mod parse;
pub mod query;
pub mod reply;
pub mod ws;
