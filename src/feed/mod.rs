//! Live candles over Bitget's WebSocket, with REST confirming what the socket cannot prove
//! and filling what it missed.
//!
//! [`bars`] decides, per series and as a pure function of pushes, REST answers and the
//! server's clock, which bars are closed and final.

pub mod bars;
