//! What Bitget's protocol fixes and both sides of it must agree on, shared by the poller
//! and the simulator and nothing else:
//!
//! - [`timeframe`]: the candle periods, their spellings (REST per market, WebSocket) and
//!   where each candle opens;
//! - [`sign`]: the HMAC request signature and the API key triple;
//! - [`clock`]: the injectable wall clock, so a test moves both sides' time at once.
//!
//! Everything else the simulator knows (endpoints, limits, codes, reply shapes) it writes
//! down on its own, so a mistake in the poller's reading of Bitget is not copied into the
//! oracle that checks it. The compiler keeps it that way: the simulator's crate cannot
//! reach the poller's.

pub mod clock;
pub mod sign;
pub mod timeframe;
