//! The parts of the `redcloud` command line that other programs and tests can call.

pub mod logtool;
