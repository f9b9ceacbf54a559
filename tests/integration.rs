//! Every integration test in one binary (one link instead of four), grouped as before:
//! the poller against the simulator, the simulator itself, signed requests and trading, and
//! property tests of every input reader.

mod poller;
mod robustness;
mod simulator;
mod trading;
