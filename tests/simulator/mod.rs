//! Integration tests of the Bitget simulator, over real HTTP on loopback.
//!
//! Rate-limit tests run the simulator on a manual clock, so "the 21st request in the same
//! second" and "the next second" are exact instants, not sleeps.

mod errors;
mod faults;
pub(crate) mod helpers;
mod limits;
mod log;
mod market;
mod shapes;
mod signing;
mod ws;
