//! Signed requests, strategies and execution, against fixtures and the simulator.

mod binary;
mod forward;
mod helpers;
mod live;
mod paper;
mod reference;
mod signing;
