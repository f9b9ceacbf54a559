//! Signed requests, strategies and execution, against fixtures and the simulator.

mod reference;
